import { useEffect, useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useApiClient } from '../../app/api';
import { useNav } from '../../app/navContext';
import type { Route } from '../../app/nav';
import { useI18n } from '../../i18n';
import { formatElapsed } from '../../i18n/format';
import type { Key } from '../../i18n/strings';
import { useMainButton } from '../../telegram/hooks';
import { haptic } from '../../telegram/sdk';
import { Button, Card, ErrorMessage, Screen, Spinner } from '../../ui/ui';

type ProgressRoute = Extract<Route, { name: 'progress' }>;

/** Polls GET /api/jobs/{id} until the job ends, then shows the result (or why it failed). */
export default function ProgressScreen(props: { route: ProgressRoute }) {
  const { t } = useI18n();
  const nav = useNav();
  const api = useApiClient();
  const qc = useQueryClient();
  const { jobId, generationId, person, startedAt } = props.route;
  const [now, setNow] = useState(() => Date.now());
  useMainButton(null);

  const job = useQuery({
    queryKey: ['job', jobId],
    queryFn: () => api.job(jobId),
    refetchInterval: (q) => {
      const st = q.state.data?.state;
      return st === 'succeeded' || st === 'failed' || st === 'cancelled' ? false : 1500;
    },
    staleTime: 0,
  });
  const state = job.data?.state;
  const ended = state === 'succeeded' || state === 'failed' || state === 'cancelled';

  const gen = useQuery({
    queryKey: ['generation', generationId],
    queryFn: () => api.generation(generationId),
    enabled: ended,
  });

  useEffect(() => {
    if (ended) return;
    const id = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(id);
  }, [ended]);

  useEffect(() => {
    if (!gen.data) return;
    void qc.invalidateQueries({ queryKey: ['billing'] });
    void qc.invalidateQueries({ queryKey: ['generations'] });
    if (gen.data.status === 'succeeded') {
      haptic('success');
      qc.setQueryData(['generation', generationId], gen.data);
      nav.replace({ name: 'result', id: generationId, person });
    } else if (gen.data.status === 'failed') {
      haptic('error');
    }
  }, [gen.data, generationId, nav, person, qc]);

  const cancel = useMutation({
    mutationFn: () => api.cancelJob(jobId),
    onSuccess: () => {
      void qc.invalidateQueries({ queryKey: ['job', jobId] });
      void qc.invalidateQueries({ queryKey: ['billing'] });
    },
  });

  const elapsedFrom = job.data?.created_at ? Date.parse(job.data.created_at) : startedAt;
  return (
    <Screen testId="screen-progress" title={t('appTitle')}>
      <Card>
        {job.isError && <ErrorMessage error={job.error} onRetry={() => void job.refetch()} />}
        {!job.data && !job.isError && <Spinner label={t('loading')} />}
        {state === 'queued' && (
          <div aria-live="polite">
            <h2 className="text-lg font-semibold">{t('queued')}</h2>
            {job.data?.queue_position != null && <p>{t('queuePosition', { n: job.data.queue_position })}</p>}
            <Button className="mt-3" variant="danger" disabled={cancel.isPending} onClick={() => cancel.mutate()}>
              {t('cancelJob')}
            </Button>
            {cancel.isError && <ErrorMessage error={cancel.error} />}
          </div>
        )}
        {state === 'running' && (
          <div aria-live="polite">
            <h2 className="text-lg font-semibold">{t('generating')}</h2>
            {job.data?.stage && <p>{t(('stage_' + job.data.stage) as Key)}</p>}
            <div className="my-2 h-2 overflow-hidden rounded bg-bg" role="progressbar" aria-valuenow={job.data?.progress ?? 0} aria-valuemin={0} aria-valuemax={100} aria-label={t('generating')}>
              <div className="h-full bg-btn transition-[width]" style={{ width: `${job.data?.progress ?? 0}%` }} />
            </div>
            <p className="text-hint">{t('elapsed', { t: formatElapsed((now - elapsedFrom) / 1000) })}</p>
          </div>
        )}
        {ended && !gen.data && !gen.isError && <Spinner label={t('loading')} />}
        {gen.isError && <ErrorMessage error={gen.error} onRetry={() => void gen.refetch()} />}
        {gen.data?.status === 'failed' && (
          <div>
            <h2 className="text-lg font-semibold">{t('failed')}</h2>
            <p data-testid="error-message" role="alert">
              {gen.data.error?.message ?? t('genericError')}
            </p>
          </div>
        )}
        {gen.data?.status === 'cancelled' && <p>{t('cancelled')}</p>}
        {!ended && <p className="mt-3 text-sm text-hint">{t('canLeave')}</p>}
      </Card>
      {(gen.data?.status === 'failed' || gen.data?.status === 'cancelled') && (
        <Button className="mt-4 w-full" onClick={() => nav.replace({ name: 'tryon', person: person ?? undefined })}>
          {t('tryAnother')}
        </Button>
      )}
    </Screen>
  );
}
