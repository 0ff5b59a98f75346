import { createContext, useContext } from 'react';
import type { LaunchInfo } from './launchParams';

export interface Launch {
  info: LaunchInfo;
  nativeMainButton: boolean;
  canDownload: boolean;
}

export const LaunchCtx = createContext<Launch | null>(null);

export function useLaunch(): Launch {
  const v = useContext(LaunchCtx);
  if (!v) throw new Error('useLaunch outside LaunchCtx');
  return v;
}
