import { useQuery } from '@tanstack/react-query';
import { useApiClient } from '../../app/api';
import { useNav } from '../../app/navContext';
import { useBilling } from '../../app/queries';
import { useI18n } from '../../i18n';
import { creditWord, credits, formatDate } from '../../i18n/format';
import type { Key } from '../../i18n/strings';
import { useMainButton } from '../../telegram/hooks';
import { Button, Card, ErrorMessage, ImageBox, Screen, Spinner } from '../../ui/ui';

export function LangSwitch() {
  const { lang, setLang, t } = useI18n();
  return (
    // The accessible name starts with the visible text (WCAG 2.5.3), then says what it is.
    <Button
      data-testid="lang-switch"
      onClick={() => setLang(lang === 'ru' ? 'en' : 'ru')}
      aria-label={`${lang === 'ru' ? 'EN' : 'RU'} — ${t('language')}`}
    >
      {lang === 'ru' ? 'EN' : 'RU'}
    </Button>
  );
}

export function HomeScreen() {
  const { t, lang } = useI18n();
  const nav = useNav();
  const api = useApiClient();
  const billing = useBilling();
  const recent = useQuery({ queryKey: ['generations', 'recent'], queryFn: () => api.generations(null, 6) });
  useMainButton(null);
  const b = billing.data?.balance;

  return (
    <Screen testId="screen-home" title={t('appTitle')} actions={<LangSwitch />}>
      <Card>
        <h2 className="text-sm text-hint">{t('balance')}</h2>
        {billing.isPending ? (
          <Spinner label={t('loading')} />
        ) : billing.isError ? (
          <ErrorMessage error={billing.error} onRetry={() => void billing.refetch()} />
        ) : (
          <>
            <p className="text-3xl font-bold">
              <span data-testid="balance-total">{b?.total ?? 0}</span>{' '}
              <span className="text-base font-normal text-hint">{creditWord(b?.total ?? 0, lang)}</span>
            </p>
            <p className="mt-1">
              {t('plan')}: {t(('plan_' + (b?.plan ?? 'none')) as Key)}
            </p>
            {b?.period_ends_at && (b.period ?? 0) >= 0 && (
              <p className="text-sm text-hint">
                {t(b.plan === 'free' ? 'freeLeft' : 'periodLeft', {
                  n: credits(b.period ?? 0, lang),
                  // The free month renews at Moscow midnight (the server's month):
                  // "1 January", whatever the phone's time zone.
                  date: formatDate(b.period_ends_at, lang, b.plan === 'free' ? 'moscow' : 'local'),
                })}
              </p>
            )}
            {(b?.pack ?? 0) > 0 && <p className="text-sm text-hint">{t('packLeft', { n: credits(b?.pack ?? 0, lang) })}</p>}
          </>
        )}
        <Button data-testid="nav-wallet" className="mt-3" onClick={() => nav.push({ name: 'wallet' })}>
          {t('wallet')}
        </Button>
      </Card>

      <div className="mt-4 grid grid-cols-1 gap-3 sm:grid-cols-2">
        <button
          type="button"
          data-testid="tool-tryon"
          onClick={() => nav.push({ name: 'tryon' })}
          className="flex min-h-20 items-center gap-3 rounded-2xl bg-btn p-4 text-left text-btn-fg"
        >
          <span aria-hidden="true" className="text-3xl">
            👕
          </span>
          <span>
            <span className="block font-semibold">{t('toolTryon')}</span>
            <span className="block text-sm">{t('toolTryonHint')}</span>
          </span>
        </button>
        <button type="button" disabled aria-disabled="true" className="flex min-h-20 items-center gap-3 rounded-2xl bg-card p-4 text-left opacity-70">
          <span aria-hidden="true" className="text-3xl">
            💬
          </span>
          <span>
            <span className="block font-semibold">{t('toolEdit')}</span>
            <span className="block text-sm text-hint">{t('toolEditHint')}</span>
          </span>
        </button>
      </div>

      <div className="mt-6 flex items-center justify-between">
        <h2 className="text-lg font-semibold">{t('recent')}</h2>
        <Button data-testid="nav-history" onClick={() => nav.push({ name: 'history' })}>
          {t('history')}
        </Button>
      </div>
      {recent.isError && <ErrorMessage error={recent.error} onRetry={() => void recent.refetch()} />}
      {recent.data && recent.data.items.length === 0 && <p className="mt-2 text-hint">{t('noResults')}</p>}
      <ul className="mt-2 grid grid-cols-3 gap-2">
        {recent.data?.items
          .filter((g) => g.result)
          .map((g) => (
            <li key={g.id}>
              <button type="button" className="block w-full" onClick={() => nav.push({ name: 'result', id: g.id, person: null })}>
                <ImageBox src={g.result?.thumb_url ?? ''} alt={t('thumbAlt', { date: formatDate(g.created_at, lang) })} lazy />
              </button>
            </li>
          ))}
      </ul>
    </Screen>
  );
}
