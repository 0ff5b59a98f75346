import { createContext, useContext } from 'react';
import type { ApiClient } from '../api/client';

export const ApiCtx = createContext<ApiClient | null>(null);

export function useApiClient(): ApiClient {
  const v = useContext(ApiCtx);
  if (!v) throw new Error('useApiClient outside ApiCtx');
  return v;
}
