import type { Upload } from '../api/types';

export type Route =
  | { name: 'home' }
  | { name: 'tryon'; person?: Upload }
  | { name: 'progress'; jobId: string; generationId: string; person: Upload | null; startedAt: number }
  | { name: 'result'; id: string; person: Upload | null }
  | { name: 'history' }
  | { name: 'wallet'; need?: { balance: number | null; cost: number | null } };

export interface Nav {
  route: Route;
  depth: number;
  push: (r: Route) => void;
  /** Replaces the current screen (progress → result). */
  replace: (r: Route) => void;
  back: () => void;
  home: () => void;
  /** A screen with inner steps handles back itself first (returns true when it did). */
  setBackInterceptor: (fn: (() => boolean) | null) => void;
}
