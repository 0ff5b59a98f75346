import { useEffect, useReducer, useRef, useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useApiClient } from '../../app/api';
import { useNav } from '../../app/navContext';
import { useBilling } from '../../app/queries';
import { isApiError } from '../../api/client';
import { ASPECT_RATIOS, CATEGORIES, OUTPUT_FORMATS, type Category, type Upload } from '../../api/types';
import { useI18n } from '../../i18n';
import { creditWord } from '../../i18n/format';
import type { Key } from '../../i18n/strings';
import { haptic, haptic_select, setClosingConfirmation } from '../../telegram/sdk';
import { Card, ErrorMessage, ImageBox, Screen } from '../../ui/ui';
import { prepareImage } from './image';
import { STEPS, canAdvance, initialQuiz, quizReducer, type QuizState } from './machine';
import { PrimaryAction } from './PrimaryAction';

export const CATEGORY_ICONS: Record<Category, string> = {
  top: '👕',
  bottom: '👖',
  dress: '👗',
  outerwear: '🧥',
  shoes: '👟',
  headwear: '🧢',
  glasses: '👓',
  bag: '👜',
  jewelry: '💍',
  other: '✨',
};

const STEP_TITLE: Record<QuizState['step'], Key> = {
  person: 'stepPerson',
  item: 'stepItem',
  category: 'stepCategory',
  options: 'stepOptions',
  confirm: 'stepConfirm',
};

function newKey(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID();
  return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
}

export default function TryonScreen(props: { person: Upload | null }) {
  const { t, lang } = useI18n();
  const nav = useNav();
  const api = useApiClient();
  const qc = useQueryClient();
  const billing = useBilling();
  const [s, dispatch] = useReducer(quizReducer, props.person, initialQuiz);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  // Back steps through the quiz before it leaves it.
  const stepRef = useRef(s.step);
  stepRef.current = s.step;
  useEffect(() => {
    nav.setBackInterceptor(() => {
      const step = stepRef.current;
      if (step === 'person' || (step === 'item' && props.person)) return false;
      setError(null);
      dispatch({ type: 'back' });
      return true;
    });
    return () => nav.setBackInterceptor(null);
  }, [nav, props.person]);

  const cost = billing.data?.costs.tryon ?? null;
  const total = billing.data?.balance.total ?? null;

  async function submit(): Promise<void> {
    if (!s.person || !s.item || !s.category) return;
    const key = s.idempotencyKey ?? newKey();
    dispatch({ type: 'submitting', key });
    setBusy(true);
    setError(null);
    try {
      const r = await api.tryon(
        {
          person_upload_id: s.person.id,
          item_upload_id: s.item.id,
          category: s.category,
          aspect_ratio: s.aspectRatio,
          output_format: s.outputFormat,
        },
        key,
      );
      dispatch({ type: 'submitted' });
      haptic('success');
      void qc.invalidateQueries({ queryKey: ['billing'] });
      void qc.invalidateQueries({ queryKey: ['generations'] });
      nav.replace({ name: 'progress', jobId: r.job_id, generationId: r.generation_id, person: s.person, startedAt: Date.now() });
    } catch (e) {
      haptic('error');
      if (isApiError(e) && e.status === 402) {
        dispatch({ type: 'submitted' });
        nav.push({ name: 'wallet', need: { balance: e.balance, cost: e.cost } });
      } else {
        setError(e);
      }
    } finally {
      setBusy(false);
    }
  }

  const stepIndex = STEPS.indexOf(s.step) + 1;
  const primary =
    s.step === 'confirm'
      ? { text: t('start'), onClick: () => void submit() }
      : { text: t('next'), onClick: () => dispatch({ type: 'next' }) };

  return (
    <Screen testId="screen-tryon" title={t(STEP_TITLE[s.step])}>
      <p className="mb-3 text-sm text-hint">{t('stepOf', { i: stepIndex, n: STEPS.length })}</p>
      {s.step === 'person' && (
        <PhotoStep
          kind="person"
          selected={s.person}
          onUploading={setBusy}
          onPicked={(u) => dispatch({ type: 'person', upload: u })}
        />
      )}
      {s.step === 'item' && (
        <PhotoStep
          kind="item"
          selected={s.item}
          exclude={s.person?.id ?? null}
          onUploading={setBusy}
          onPicked={(u) => dispatch({ type: 'item', upload: u })}
        />
      )}
      {s.step === 'category' && (
        <fieldset>
          <legend className="sr-only">{t('stepCategory')}</legend>
          <div className="grid grid-cols-2 gap-2 sm:grid-cols-5">
            {CATEGORIES.map((c) => (
              <button
                key={c}
                type="button"
                data-testid={'category-' + c}
                aria-pressed={s.category === c}
                onClick={() => {
                  haptic_select();
                  dispatch({ type: 'category', category: c });
                }}
                className={`flex min-h-20 flex-col items-center justify-center gap-1 rounded-xl p-2 ${
                  s.category === c ? 'bg-btn text-btn-fg' : 'bg-card'
                }`}
              >
                <span aria-hidden="true" className="text-2xl">
                  {CATEGORY_ICONS[c]}
                </span>
                <span className="text-sm">{t(('cat_' + c) as Key)}</span>
              </button>
            ))}
          </div>
        </fieldset>
      )}
      {s.step === 'options' && (
        <div className="flex flex-col gap-4">
          <label className="flex flex-col gap-1">
            <span className="font-medium">{t('aspect')}</span>
            <select
              className="min-h-11 rounded-xl bg-card px-3"
              value={s.aspectRatio}
              onChange={(e) => {
                const v = ASPECT_RATIOS.find((r) => r === e.target.value);
                if (v) dispatch({ type: 'aspect', value: v });
              }}
            >
              {ASPECT_RATIOS.map((r) => (
                <option key={r} value={r}>
                  {r === 'auto' ? t('aspectAuto') : r}
                </option>
              ))}
            </select>
          </label>
          <fieldset className="flex flex-col gap-1">
            <legend className="font-medium">{t('format')}</legend>
            <div className="flex gap-2">
              {OUTPUT_FORMATS.map((f) => (
                <label key={f} className={`min-h-11 flex-1 rounded-xl px-3 py-2 text-center ${s.outputFormat === f ? 'bg-btn text-btn-fg' : 'bg-card'}`}>
                  <input
                    type="radio"
                    name="format"
                    value={f}
                    className="sr-only"
                    checked={s.outputFormat === f}
                    onChange={() => dispatch({ type: 'format', value: f })}
                  />
                  {f.toUpperCase()}
                </label>
              ))}
            </div>
          </fieldset>
        </div>
      )}
      {s.step === 'confirm' && (
        <Card>
          <div className="mb-3 grid grid-cols-2 gap-2">
            {s.person && <ImageBox src={s.person.thumb_url} alt={t('photoAlt')} />}
            {s.item && <ImageBox src={s.item.thumb_url} alt={t('itemAlt')} />}
          </div>
          <p>
            {t('stepCategory')} {s.category ? t(('cat_' + s.category) as Key) : ''} · {s.aspectRatio === 'auto' ? t('aspectAuto') : s.aspectRatio} ·{' '}
            {s.outputFormat.toUpperCase()}
          </p>
          <p className="mt-2 text-lg">
            {t('cost')}: <span data-testid="confirm-cost">{cost ?? '…'}</span>
            {cost !== null && <span> {creditWord(cost, lang)}</span>}
          </p>
          {total !== null && cost !== null && (
            <p>
              {t('balanceAfter')}: {total - cost}
            </p>
          )}
          {billing.data?.balance.watermark && <p className="mt-2 text-sm text-hint">{t('watermarkWillApply')}</p>}
        </Card>
      )}
      {error !== null && <ErrorMessage error={error} />}
      <PrimaryAction
        text={primary.text}
        enabled={canAdvance(s) && !busy && (s.step !== 'confirm' || cost !== null)}
        loading={busy}
        onClick={primary.onClick}
      />
    </Screen>
  );
}

function PhotoStep(props: {
  kind: 'person' | 'item';
  selected: Upload | null;
  exclude?: string | null;
  onPicked: (u: Upload) => void;
  onUploading: (b: boolean) => void;
}) {
  const { t } = useI18n();
  const api = useApiClient();
  const qc = useQueryClient();
  const [progress, setProgress] = useState<number | null>(null);
  const [preparing, setPreparing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  const abort = useRef<AbortController | null>(null);
  const recent = useQuery({ queryKey: ['uploads'], queryFn: () => api.uploads(null, 12) });
  const id = props.kind + '-file-input';

  useEffect(() => () => abort.current?.abort(), []);

  async function onFile(file: File | undefined): Promise<void> {
    if (!file) return;
    setError(null);
    setPreparing(true);
    props.onUploading(true);
    setClosingConfirmation(true);
    const ctrl = new AbortController();
    abort.current = ctrl;
    try {
      const prepared = await prepareImage(file);
      setPreparing(false);
      setProgress(0);
      const up = await api.upload(prepared.blob, prepared.name, (f) => setProgress(Math.round(f * 100)), ctrl.signal);
      haptic('success');
      void qc.invalidateQueries({ queryKey: ['uploads'] });
      props.onPicked(up);
    } catch (e) {
      if (!(isApiError(e) && e.code === 'aborted')) {
        haptic('error');
        setError(e);
      }
    } finally {
      setPreparing(false);
      setProgress(null);
      props.onUploading(false);
      setClosingConfirmation(false);
      if (inputRef.current) inputRef.current.value = '';
    }
  }

  const uploads = (recent.data?.items ?? []).filter((u) => u.id !== props.exclude);
  return (
    <div>
      <p className="mb-3 text-sm">{t(props.kind === 'person' ? 'tips' : 'itemTips')}</p>
      {props.selected && (
        <div className="mx-auto mb-3 w-40">
          <ImageBox src={props.selected.thumb_url} alt={t(props.kind === 'person' ? 'photoAlt' : 'itemAlt')} ratio={`${props.selected.width} / ${props.selected.height}`} />
        </div>
      )}
      <label htmlFor={id} className="flex min-h-12 cursor-pointer items-center justify-center rounded-xl bg-card px-4 py-3 font-medium text-link focus-within:outline focus-within:outline-2">
        {t('pickPhoto')}
        <input
          ref={inputRef}
          id={id}
          data-testid={id}
          type="file"
          accept="image/jpeg,image/png,image/*"
          className="sr-only"
          onChange={(e) => void onFile(e.target.files?.[0])}
        />
      </label>
      <div aria-live="polite" className="min-h-6 py-1 text-sm text-hint">
        {preparing ? t('preparing') : progress !== null ? t('uploading', { p: progress }) : ''}
      </div>
      {progress !== null && (
        <div className="h-2 overflow-hidden rounded bg-card" role="progressbar" aria-valuenow={progress} aria-valuemin={0} aria-valuemax={100} aria-label={t('uploading', { p: progress })}>
          <div className="h-full bg-btn transition-[width]" style={{ width: `${progress}%` }} />
        </div>
      )}
      {error !== null && <ErrorMessage error={error} />}
      {uploads.length > 0 && (
        <>
          <h2 className="mt-4 mb-2 font-medium">{t('recentUploads')}</h2>
          <ul className="grid grid-cols-4 gap-2">
            {uploads.map((u) => (
              <li key={u.id}>
                <button
                  type="button"
                  aria-pressed={props.selected?.id === u.id}
                  aria-label={t('choosePhoto')}
                  onClick={() => props.onPicked(u)}
                  className={`block w-full rounded-xl ${props.selected?.id === u.id ? 'ring-4 ring-btn' : ''}`}
                >
                  <ImageBox src={u.thumb_url} alt="" ratio="1 / 1" lazy />
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
