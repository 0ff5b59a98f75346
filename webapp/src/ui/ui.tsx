import type { ButtonHTMLAttributes, ReactNode } from 'react';
import { isApiError } from '../api/client';
import { useI18n } from '../i18n';
import { PrepareError } from '../features/tryon/image';

export function Screen(props: { testId: string; title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <main data-testid={props.testId} className="mx-auto w-full max-w-xl px-4 pb-24 pt-3" aria-labelledby={props.testId + '-title'}>
      <div className="mb-3 flex items-center justify-between gap-2">
        <h1 id={props.testId + '-title'} className="text-xl font-semibold">
          {props.title}
        </h1>
        {props.actions}
      </div>
      {props.children}
    </main>
  );
}

export function Button(
  props: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: 'primary' | 'plain' | 'danger' },
) {
  const { variant = 'plain', className = '', ...rest } = props;
  const look =
    variant === 'primary'
      ? 'bg-btn text-btn-fg font-semibold'
      : variant === 'danger'
        ? 'bg-card text-danger'
        : 'bg-card text-fg';
  return (
    <button
      type="button"
      {...rest}
      className={`min-h-11 rounded-xl px-4 py-2 disabled:opacity-50 ${look} ${className}`}
    />
  );
}

export function Card(props: { children: ReactNode; className?: string }) {
  return <section className={`rounded-2xl bg-card p-4 ${props.className ?? ''}`}>{props.children}</section>;
}

export function Spinner(props: { label: string }) {
  return (
    <div role="status" className="flex items-center gap-2 py-6 text-hint">
      <span className="inline-block h-5 w-5 animate-spin rounded-full border-2 border-hint border-t-transparent" aria-hidden="true" />
      <span>{props.label}</span>
    </div>
  );
}

/** Plain words for any error: the server's message, offline, rate-limited. */
export function useErrorText(): (e: unknown) => string {
  const { t } = useI18n();
  return (e) => {
    if (e instanceof PrepareError) {
      return t(e.reason === 'heic' ? 'heic' : e.reason === 'not_image' ? 'notImage' : e.reason === 'empty' ? 'emptyFile' : 'undecodable');
    }
    if (isApiError(e)) {
      if (e.offline) return t('offline');
      if (e.status === 429) return e.retryAfter ? t('rateLimited', { s: e.retryAfter }) : t('rateLimitedSoon');
      // The server's own words, as a sentence (its messages start in lower case).
      if (e.message) return e.message.charAt(0).toUpperCase() + e.message.slice(1);
    }
    return t('genericError');
  };
}

export function ErrorMessage(props: { error: unknown; onRetry?: () => void }) {
  const { t } = useI18n();
  const text = useErrorText()(props.error);
  return (
    <div role="alert" className="my-3 rounded-xl bg-card p-3">
      <p data-testid="error-message" className="text-danger">
        {text}
      </p>
      {props.onRetry && (
        <Button className="mt-2" onClick={props.onRetry}>
          {t('retry')}
        </Button>
      )}
    </div>
  );
}

/** An image in a box of reserved size, so nothing moves when it loads. */
export function ImageBox(props: { src: string; alt: string; ratio?: string; testId?: string; lazy?: boolean; className?: string }) {
  return (
    <div className={`overflow-hidden rounded-xl bg-card ${props.className ?? ''}`} style={{ aspectRatio: props.ratio ?? '3 / 4' }}>
      <img
        src={props.src}
        alt={props.alt}
        data-testid={props.testId}
        loading={props.lazy ? 'lazy' : 'eager'}
        decoding="async"
        className="h-full w-full object-cover"
      />
    </div>
  );
}
