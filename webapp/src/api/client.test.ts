import { describe, expect, it } from 'vitest';
import { ApiClient, ApiError, errorFromBody } from './client';

type Call = { url: string; init: RequestInit };

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === null ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

function fakeServer(handler: (c: Call, n: number) => Response) {
  const calls: Call[] = [];
  const fetchFn = async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return handler({ url, init }, calls.length);
  };
  return { calls, fetchFn };
}

const auth = (token: string) => ({ token, expires_at: '2030-01-01T00:00:00Z', user: { id: 1, telegram_id: 2, first_name: 'A' } });

describe('ApiClient', () => {
  it('signs in with the raw initData in the body, then sends the bearer token', async () => {
    const s = fakeServer((c) => (c.url === '/api/auth/telegram' ? json(200, auth('T1')) : json(200, { user: {}, balance: { total: 10 } })));
    const api = new ApiClient({ initData: 'query_id=1&hash=abc', fetch: s.fetchFn });
    const me = await api.me();
    expect(me.balance.total).toBe(10);
    expect(s.calls[0]?.init.body).toBe(JSON.stringify({ init_data: 'query_id=1&hash=abc' }));
    expect((s.calls[1]?.init.headers as Record<string, string>).Authorization).toBe('Bearer T1');
  });

  it('signs in once for concurrent requests', async () => {
    const s = fakeServer((c) => (c.url === '/api/auth/telegram' ? json(200, auth('T')) : json(200, { ok: 1 })));
    const api = new ApiClient({ initData: 'x', fetch: s.fetchFn });
    await Promise.all([api.me(), api.billing(), api.job('j')]);
    expect(s.calls.filter((c) => c.url === '/api/auth/telegram')).toHaveLength(1);
  });

  it('on 401 signs in again once and repeats the request', async () => {
    let tokens = 0;
    const s = fakeServer((c) => {
      if (c.url === '/api/auth/telegram') return json(200, auth('T' + ++tokens));
      const h = c.init.headers as Record<string, string>;
      return h.Authorization === 'Bearer T1'
        ? json(401, { error: { code: 'token_expired', message: 'expired' } })
        : json(200, { user: {}, balance: { total: 3 } });
    });
    const api = new ApiClient({ initData: 'x', fetch: s.fetchFn });
    const me = await api.me();
    expect(me.balance.total).toBe(3);
    expect(s.calls.map((c) => c.url)).toEqual(['/api/auth/telegram', '/api/me', '/api/auth/telegram', '/api/me']);
  });

  it('gives up after the second 401 with the server error', async () => {
    const s = fakeServer((c) =>
      c.url === '/api/auth/telegram' ? json(200, auth('T')) : json(401, { error: { code: 'user_unknown', message: 'who?' } }),
    );
    const api = new ApiClient({ initData: 'x', fetch: s.fetchFn });
    await expect(api.me()).rejects.toMatchObject({ status: 401, code: 'user_unknown', message: 'who?' });
    expect(s.calls.filter((c) => c.url === '/api/me')).toHaveLength(2);
  });

  it('a refused sign-in surfaces its code', async () => {
    const s = fakeServer(() => json(401, { error: { code: 'initdata_bad_hash', message: 'bad' } }));
    const api = new ApiClient({ initData: 'x', fetch: s.fetchFn });
    await expect(api.signIn()).rejects.toMatchObject({ code: 'initdata_bad_hash' });
  });

  it('402 carries balance and cost; the Idempotency-Key is sent', async () => {
    const s = fakeServer((c) =>
      c.url === '/api/auth/telegram'
        ? json(200, auth('T'))
        : json(402, { error: { code: 'insufficient_credits', message: 'not enough', balance: 1, cost: 2 } }),
    );
    const api = new ApiClient({ initData: 'x', fetch: s.fetchFn });
    const p = api.tryon({ person_upload_id: 'a', item_upload_id: 'b', category: 'top' }, 'key-1');
    await expect(p).rejects.toMatchObject({ status: 402, balance: 1, cost: 2, message: 'not enough' });
    expect((s.calls[1]?.init.headers as Record<string, string>)['Idempotency-Key']).toBe('key-1');
  });

  it('429 reads Retry-After; a network failure is offline', async () => {
    const e = errorFromBody(429, { error: { code: 'rate_limited', message: 'slow down' } }, '7');
    expect(e.retryAfter).toBe(7);
    const api = new ApiClient({
      initData: 'x',
      fetch: async () => {
        throw new TypeError('Failed to fetch');
      },
    });
    const err = await api.me().catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).offline).toBe(true);
  });

  it('a non-JSON error body still gives a status and a code', () => {
    const e = errorFromBody(502, null, null);
    expect(e).toMatchObject({ status: 502, code: 'http_502', message: '' });
  });

  it('204 answers undefined; cursors go in the query', async () => {
    const s = fakeServer((c) =>
      c.url === '/api/auth/telegram' ? json(200, auth('T')) : c.init.method === 'DELETE' ? new Response(null, { status: 204 }) : json(200, { items: [], next_cursor: null }),
    );
    const api = new ApiClient({ initData: 'x', fetch: s.fetchFn });
    await expect(api.deleteGeneration('g1')).resolves.toBeUndefined();
    await api.generations('c 1', 24);
    expect(s.calls[2]?.url).toBe('/api/generations?limit=24&cursor=c%201');
  });
});
