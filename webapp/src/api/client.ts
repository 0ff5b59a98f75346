import type {
  AuthResponse,
  BillingResponse,
  Generation,
  GenerationsPage,
  Job,
  MeResponse,
  TryonRequest,
  TryonResponse,
  Upload,
  UploadsPage,
} from './types';

/** An answer that is not 2xx, or no answer at all (`status` 0: offline or network). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds from Retry-After (429/503), when given. */
  readonly retryAfter: number | null;
  /** For 402 `insufficient_credits`: the numbers the server sent. */
  readonly balance: number | null;
  readonly cost: number | null;

  constructor(
    status: number,
    code: string,
    message: string,
    extra: { retryAfter?: number | null; balance?: number | null; cost?: number | null } = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = extra.retryAfter ?? null;
    this.balance = extra.balance ?? null;
    this.cost = extra.cost ?? null;
  }

  get offline(): boolean {
    return this.status === 0;
  }
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** Reads `{"error":{"code","message",...}}`; anything else becomes a generic error. */
export function errorFromBody(status: number, body: unknown, retryAfter: string | null): ApiError {
  const ra = retryAfter !== null && /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) : null;
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const err = (body as { error: unknown }).error;
    if (typeof err === 'object' && err !== null) {
      const e = err as Record<string, unknown>;
      const code = typeof e.code === 'string' ? e.code : 'http_' + status;
      const message = typeof e.message === 'string' ? e.message : '';
      return new ApiError(status, code, message, {
        retryAfter: ra,
        balance: num(e.balance),
        cost: num(e.cost),
      });
    }
  }
  return new ApiError(status, 'http_' + status, '', { retryAfter: ra });
}

export type FetchFn = (input: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** The raw initData string Telegram gave the page (what the server checks). */
  initData: string;
  fetch?: FetchFn;
  /** Prefix for paths; '' means the page's own origin. */
  base?: string;
}

/**
 * The API client: signs in with initData, keeps the token in memory only, and signs in
 * again once when an answer is 401 (an expired session), then repeats the request.
 */
export class ApiClient {
  private token: string | null = null;
  private signingIn: Promise<AuthResponse> | null = null;
  private readonly fetchFn: FetchFn;
  private readonly base: string;
  private readonly initData: string;

  constructor(opts: ClientOptions) {
    this.initData = opts.initData;
    this.fetchFn = opts.fetch ?? ((i, r) => fetch(i, r));
    this.base = opts.base ?? '';
  }

  /** The current token (for XHR uploads); signs in first if there is none. */
  async bearer(): Promise<string> {
    if (this.token !== null) return this.token;
    const auth = await this.signIn();
    return auth.token;
  }

  /** Forget the token so the next request signs in again. */
  invalidate(): void {
    this.token = null;
  }

  signIn(): Promise<AuthResponse> {
    if (this.signingIn) return this.signingIn;
    const p = (async () => {
      const res = await this.send('/api/auth/telegram', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ init_data: this.initData }),
      });
      const body = await readJson(res);
      if (!res.ok) throw errorFromBody(res.status, body, res.headers.get('Retry-After'));
      const auth = body as AuthResponse;
      this.token = auth.token;
      return auth;
    })();
    this.signingIn = p;
    p.then(
      () => (this.signingIn = null),
      () => (this.signingIn = null),
    );
    return p;
  }

  private async send(path: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetchFn(this.base + path, init);
    } catch {
      throw new ApiError(0, 'offline', '');
    }
  }

  /** A signed-in request; JSON in and out. 204 answers `undefined`. */
  async request<T>(
    path: string,
    init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.bearer();
      const headers: Record<string, string> = {
        Accept: 'application/json',
        Authorization: 'Bearer ' + token,
        ...init.headers,
      };
      let body: string | undefined;
      if (init.body !== undefined) {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(init.body);
      }
      const res = await this.send(path, { method: init.method ?? 'GET', headers, body });
      if (res.status === 401 && attempt === 0) {
        // The session expired (or the server restarted with a new secret): sign in once more.
        if (this.token === token) this.token = null;
        continue;
      }
      if (res.status === 204) return undefined as T;
      const data = await readJson(res);
      if (!res.ok) throw errorFromBody(res.status, data, res.headers.get('Retry-After'));
      return data as T;
    }
  }

  me(): Promise<MeResponse> {
    return this.request('/api/me');
  }
  billing(): Promise<BillingResponse> {
    return this.request('/api/billing');
  }
  uploads(cursor?: string | null, limit = 20): Promise<UploadsPage> {
    return this.request('/api/uploads' + query({ limit, cursor }));
  }
  deleteUpload(id: string): Promise<void> {
    return this.request('/api/uploads/' + encodeURIComponent(id), { method: 'DELETE' });
  }
  generations(cursor?: string | null, limit = 20): Promise<GenerationsPage> {
    return this.request('/api/generations' + query({ limit, cursor }));
  }
  generation(id: string): Promise<Generation> {
    return this.request('/api/generations/' + encodeURIComponent(id));
  }
  deleteGeneration(id: string): Promise<void> {
    return this.request('/api/generations/' + encodeURIComponent(id), { method: 'DELETE' });
  }
  job(id: string): Promise<Job> {
    return this.request('/api/jobs/' + encodeURIComponent(id));
  }
  cancelJob(id: string): Promise<{ id: string; state: 'cancelled' }> {
    return this.request('/api/jobs/' + encodeURIComponent(id) + '/cancel', { method: 'POST' });
  }
  tryon(req: TryonRequest, idempotencyKey: string): Promise<TryonResponse> {
    return this.request('/api/tryon', {
      method: 'POST',
      body: req,
      headers: { 'Idempotency-Key': idempotencyKey },
    });
  }
  upload(
    blob: Blob,
    name: string,
    onProgress?: (fraction: number) => void,
    signal?: AbortSignal,
  ): Promise<Upload> {
    return xhrUpload(this, this.base + '/api/uploads', blob, name, onProgress, signal);
  }
}

function query(q: Record<string, string | number | null | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (v === null || v === undefined || v === '') continue;
    parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(v)));
  }
  return parts.length ? '?' + parts.join('&') : '';
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/** multipart upload over XHR, for upload progress; 401 → sign in once and resend. */
async function xhrUpload(
  client: ApiClient,
  url: string,
  blob: Blob,
  name: string,
  onProgress?: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<Upload> {
  for (let attempt = 0; ; attempt++) {
    const token = await client.bearer();
    const result = await new Promise<{ status: number; body: unknown; retryAfter: string | null }>(
      (resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open('POST', url);
        xhr.setRequestHeader('Authorization', 'Bearer ' + token);
        xhr.setRequestHeader('Accept', 'application/json');
        xhr.upload.onprogress = (ev) => {
          if (ev.lengthComputable && onProgress) onProgress(ev.loaded / ev.total);
        };
        xhr.onload = () => {
          let body: unknown = null;
          try {
            body = xhr.responseText ? (JSON.parse(xhr.responseText) as unknown) : null;
          } catch {
            body = null;
          }
          resolve({ status: xhr.status, body, retryAfter: xhr.getResponseHeader('Retry-After') });
        };
        xhr.onerror = () => reject(new ApiError(0, 'offline', ''));
        xhr.onabort = () => reject(new ApiError(0, 'aborted', ''));
        signal?.addEventListener('abort', () => xhr.abort(), { once: true });
        const form = new FormData();
        form.append('file', blob, name);
        xhr.send(form);
      },
    );
    if (result.status === 401 && attempt === 0) {
      client.invalidate();
      continue;
    }
    if (result.status < 200 || result.status >= 300) {
      throw errorFromBody(result.status, result.body, result.retryAfter);
    }
    return result.body as Upload;
  }
}
