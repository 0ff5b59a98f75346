import { createContext, useContext } from 'react';
import type { Nav } from './nav';

export const NavCtx = createContext<Nav | null>(null);

export function useNav(): Nav {
  const v = useContext(NavCtx);
  if (!v) throw new Error('useNav outside NavCtx');
  return v;
}
