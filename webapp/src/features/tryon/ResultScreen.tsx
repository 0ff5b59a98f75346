import { useState } from 'react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useApiClient } from '../../app/api';
import { useNav } from '../../app/navContext';
import { useBilling } from '../../app/queries';
import { isApiError } from '../../api/client';
import type { Generation, Upload } from '../../api/types';
import { useI18n } from '../../i18n';
import { credits } from '../../i18n/format';
import { useLaunch } from '../../telegram/context';
import { useMainButton } from '../../telegram/hooks';
import { haptic, tryDownload } from '../../telegram/sdk';
import { Button, ErrorMessage, Screen, Spinner } from '../../ui/ui';

function newKey(): string {
  return typeof crypto !== 'undefined' && 'randomUUID' in crypto ? crypto.randomUUID() : String(Date.now()) + Math.random();
}

export default function ResultScreen(props: { id: string; person: Upload | null }) {
  const { t, lang } = useI18n();
  const nav = useNav();
  const api = useApiClient();
  const qc = useQueryClient();
  const launch = useLaunch();
  const billing = useBilling();
  const gen = useQuery({ queryKey: ['generation', props.id], queryFn: () => api.generation(props.id) });
  const uploads = useQuery({ queryKey: ['uploads'], queryFn: () => api.uploads(null, 100), enabled: props.person === null });
  const g = gen.data;
  const person: Upload | null =
    props.person ?? uploads.data?.items?.find((u) => u.id === g?.inputs?.person_upload_id) ?? null;
  const [regenKey] = useState(newKey);
  const cost = billing.data?.costs.tryon ?? g?.cost ?? null;

  const del = useMutation({
    mutationFn: () => api.deleteGeneration(props.id),
    onSuccess: () => {
      haptic('success');
      qc.removeQueries({ queryKey: ['generation', props.id] });
      void qc.invalidateQueries({ queryKey: ['generations'] });
      nav.back();
    },
    onError: () => haptic('error'),
  });

  const regen = useMutation({
    mutationFn: (src: Generation) => {
      if (!src.inputs || !src.category) throw new Error('no inputs');
      return api.tryon(
        {
          person_upload_id: src.inputs.person_upload_id,
          item_upload_id: src.inputs.item_upload_id,
          category: src.category,
          aspect_ratio: src.aspect_ratio,
          output_format: src.output_format,
        },
        regenKey,
      );
    },
    onSuccess: (r) => {
      haptic('success');
      void qc.invalidateQueries({ queryKey: ['billing'] });
      void qc.invalidateQueries({ queryKey: ['generations'] });
      nav.replace({ name: 'progress', jobId: r.job_id, generationId: r.generation_id, person, startedAt: Date.now() });
    },
    onError: (e) => {
      haptic('error');
      if (isApiError(e) && e.status === 402) nav.push({ name: 'wallet', need: { balance: e.balance, cost: e.cost } });
    },
  });

  const canAnother = person !== null;
  useMainButton(canAnother ? { text: t('tryAnother'), enabled: true, onClick: () => nav.replace({ name: 'tryon', person: person ?? undefined }) } : null);

  function download(): void {
    if (!g?.result) return;
    const link = new URL(g.result.url, window.location.href);
    const name = `tryon-${g.id.slice(0, 8)}.${g.output_format === 'jpeg' ? 'jpg' : 'png'}`;
    // Telegram's download sheet fetches the file itself: the server then answers it as an
    // attachment with the CORS header Telegram needs (the signature does not cover it).
    const attachment = new URL(link.href);
    attachment.searchParams.set('download', '1');
    if (launch.canDownload && tryDownload(attachment.href, name)) return;
    window.open(link.href, '_blank', 'noopener');
  }

  return (
    <Screen testId="screen-result" title={t('result')}>
      {gen.isPending && <Spinner label={t('loading')} />}
      {gen.isError && <ErrorMessage error={gen.error} onRetry={() => void gen.refetch()} />}
      {g && g.result && (
        <>
          <Compare before={person?.url ?? null} after={g.result.url} />
          {g.watermarked && (
            <p data-testid="watermark-note" className="mt-2 text-sm text-hint">
              {t('watermarked')}
            </p>
          )}
          {g.offline_preview && <p className="mt-1 text-sm text-hint">{t('offlinePreview')}</p>}
        </>
      )}
      {g && g.status === 'failed' && (
        <p data-testid="error-message" role="alert" className="text-danger">
          {g.error?.message ?? t('genericError')}
        </p>
      )}
      {g && (
        <div className="mt-4 flex flex-col gap-2">
          {!launch.nativeMainButton && canAnother && (
            <Button data-testid="primary-action" variant="primary" onClick={() => nav.replace({ name: 'tryon', person: person ?? undefined })}>
              {t('tryAnother')}
            </Button>
          )}
          {g.result && <Button onClick={download}>{launch.canDownload ? t('download') : t('open')}</Button>}
          {g.inputs && cost !== null && (
            <Button disabled={regen.isPending} onClick={() => regen.mutate(g)}>
              {t('regenerate', { cost: credits(cost, lang) })}
            </Button>
          )}
          {regen.isError && !(isApiError(regen.error) && regen.error.status === 402) && <ErrorMessage error={regen.error} />}
          <Button data-testid="delete-result" variant="danger" disabled={del.isPending} onClick={() => del.mutate()}>
            {t('delete')}
          </Button>
          {del.isError && <ErrorMessage error={del.error} />}
        </div>
      )}
    </Screen>
  );
}

/** Before/after: the result, with the person photo over it clipped at the slider. */
function Compare(props: { before: string | null; after: string }) {
  const { t } = useI18n();
  const [pos, setPos] = useState(50);
  if (!props.before) {
    return (
      <div className="overflow-hidden rounded-xl bg-card">
        <img data-testid="result-image" src={props.after} alt={t('resultAlt')} className="block h-auto w-full" />
      </div>
    );
  }
  return (
    <div data-testid="before-after">
      <div className="relative overflow-hidden rounded-xl bg-card" style={{ aspectRatio: '3 / 4' }}>
        <img data-testid="result-image" src={props.after} alt={t('resultAlt')} className="absolute inset-0 h-full w-full object-contain" />
        <div className="absolute inset-0" style={{ clipPath: `inset(0 ${100 - pos}% 0 0)` }}>
          <img src={props.before} alt={t('photoAlt')} className="h-full w-full object-contain" />
        </div>
        <div aria-hidden="true" className="absolute inset-y-0 w-0.5 bg-btn" style={{ left: `${pos}%` }} />
        <span className="absolute left-2 top-2 rounded bg-bg px-2 text-sm">{t('before')}</span>
        <span className="absolute right-2 top-2 rounded bg-bg px-2 text-sm">{t('after')}</span>
      </div>
      <label className="mt-2 block">
        <span className="sr-only">{t('compare')}</span>
        <input type="range" min={0} max={100} value={pos} onChange={(e) => setPos(Number(e.target.value))} className="w-full" aria-label={t('compare')} />
      </label>
    </div>
  );
}
