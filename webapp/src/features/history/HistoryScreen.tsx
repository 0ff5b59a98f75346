import { useEffect, useRef } from 'react';
import { useInfiniteQuery } from '@tanstack/react-query';
import { useApiClient } from '../../app/api';
import { useNav } from '../../app/navContext';
import { useI18n } from '../../i18n';
import { formatDateTime } from '../../i18n/format';
import type { Key } from '../../i18n/strings';
import { useMainButton } from '../../telegram/hooks';
import { Button, ErrorMessage, Screen, Spinner } from '../../ui/ui';

/** The gallery of results, newest first, on the cursor API with infinite scroll. */
export default function HistoryScreen() {
  const { t, lang } = useI18n();
  const nav = useNav();
  const api = useApiClient();
  useMainButton(null);
  const q = useInfiniteQuery({
    queryKey: ['generations', 'history'],
    queryFn: ({ pageParam }) => api.generations(pageParam, 24),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.next_cursor,
  });
  const sentinel = useRef<HTMLDivElement>(null);
  const { hasNextPage, isFetchingNextPage, fetchNextPage } = q;
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !hasNextPage || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !isFetchingNextPage) void fetchNextPage();
    }, { rootMargin: '400px' });
    io.observe(el);
    return () => io.disconnect();
  }, [hasNextPage, isFetchingNextPage, fetchNextPage]);

  const items = q.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <Screen testId="screen-history" title={t('history')}>
      {q.isPending && <Spinner label={t('loading')} />}
      {q.isError && <ErrorMessage error={q.error} onRetry={() => void q.refetch()} />}
      {q.data && items.length === 0 && <p className="text-hint">{t('historyEmpty')}</p>}
      <ul className="grid grid-cols-2 gap-3 sm:grid-cols-3">
        {items.map((g) => (
          <li key={g.id} data-testid="history-item">
            <button type="button" className="block w-full text-left" onClick={() => nav.push({ name: 'result', id: g.id, person: null })}>
              <div className="overflow-hidden rounded-xl bg-card" style={{ aspectRatio: '3 / 4' }}>
                {g.result ? (
                  <img src={g.result.thumb_url} alt={t('thumbAlt', { date: formatDateTime(g.created_at, lang) })} loading="lazy" decoding="async" className="h-full w-full object-cover" />
                ) : (
                  <span className="flex h-full items-center justify-center p-2 text-center text-sm text-hint">{t(('status_' + g.status) as Key)}</span>
                )}
              </div>
              <span className="mt-1 block text-xs text-hint">{formatDateTime(g.created_at, lang)}</span>
            </button>
          </li>
        ))}
      </ul>
      <div ref={sentinel} className="h-4" />
      {q.isFetchingNextPage && <Spinner label={t('loading')} />}
      {q.hasNextPage && !q.isFetchingNextPage && (
        <Button className="mt-2 w-full" onClick={() => void q.fetchNextPage()}>
          {t('loadMore')}
        </Button>
      )}
      {q.isFetchNextPageError && <ErrorMessage error={q.error} onRetry={() => void q.fetchNextPage()} />}
    </Screen>
  );
}
