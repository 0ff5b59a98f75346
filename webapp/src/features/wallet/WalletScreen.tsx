import { useBilling } from '../../app/queries';
import { useI18n } from '../../i18n';
import { creditWord, credits, formatDate, formatDateTime, formatDelta, formatMoney, ledgerLabel } from '../../i18n/format';
import type { Key } from '../../i18n/strings';
import { useMainButton } from '../../telegram/hooks';
import { Card, ErrorMessage, Screen, Spinner } from '../../ui/ui';

/** Plan, balance by bucket, products and prices, the ledger in plain words — all from GET /api/billing. */
export default function WalletScreen(props: { need: { balance: number | null; cost: number | null } | null }) {
  const { t, lang } = useI18n();
  const billing = useBilling();
  useMainButton(null);
  const d = billing.data;
  return (
    <Screen testId="screen-wallet" title={t('wallet')}>
      {props.need && (
        <p role="alert" data-testid="error-message" className="mb-3 rounded-xl bg-card p-3 text-danger">
          {t('needCredits')}
        </p>
      )}
      {billing.isPending && <Spinner label={t('loading')} />}
      {billing.isError && <ErrorMessage error={billing.error} onRetry={() => void billing.refetch()} />}
      {d && (
        <>
          <Card>
            <h2 className="text-sm text-hint">{t('walletPlan')}</h2>
            <p className="text-lg font-semibold">{t(('plan_' + (d.balance.plan ?? 'none')) as Key)}</p>
            <p className="mt-2 text-3xl font-bold">
              <span data-testid="balance-total">{d.balance.total ?? 0}</span>{' '}
              <span className="text-base font-normal text-hint">{creditWord(d.balance.total ?? 0, lang)}</span>
            </p>
            <h3 className="mt-3 text-sm text-hint">{t('buckets')}</h3>
            <ul className="mt-1">
              <li>
                {t('bucketPeriod')}: {credits(d.balance.period ?? 0, lang)}
                {d.balance.period_ends_at && <span className="text-hint"> · {formatDate(d.balance.period_ends_at, lang, d.balance.plan === 'free' ? 'moscow' : 'local')}</span>}
              </li>
              <li>
                {t('bucketPack')}: {credits(d.balance.pack ?? 0, lang)}
              </li>
            </ul>
          </Card>
          <h2 className="mt-5 mb-2 text-lg font-semibold">{t('products')}</h2>
          <ul className="grid gap-2">
            {d.products
              .filter((p) => p.kind !== 'free')
              .map((p) => (
                <li key={p.code}>
                  <Card>
                    <div className="flex items-baseline justify-between gap-2">
                      <span className="font-semibold">{p.title}</span>
                      <span className="font-semibold">{formatMoney(p.price_kopecks ?? 0, lang)}</span>
                    </div>
                    <p className="text-sm text-hint">
                      {t('gives', { c: credits(p.credits ?? 0, lang) })}
                      {p.period_days ? ' ' + t('perDays', { n: p.period_days }) : ''} · {p.watermark ? t('withWatermark') : t('noWatermark')}
                    </p>
                  </Card>
                </li>
              ))}
          </ul>
          <p className="mt-2 text-sm text-hint">{t('buySoon')}</p>
          <h2 className="mt-5 mb-2 text-lg font-semibold">{t('ledger')}</h2>
          {d.history.length === 0 && <p className="text-hint">{t('ledgerEmpty')}</p>}
          <ul className="divide-y divide-card">
            {d.history.map((e) => (
              <li key={e.id} className="flex items-baseline justify-between gap-2 py-2">
                <span>
                  <span className="block">{ledgerLabel(e, lang)}</span>
                  {e.created_at && <span className="block text-xs text-hint">{formatDateTime(e.created_at, lang)}</span>}
                </span>
                <span className={`font-semibold ${(e.delta ?? 0) < 0 ? 'text-danger' : ''}`}>{formatDelta(e.delta ?? 0)}</span>
              </li>
            ))}
          </ul>
        </>
      )}
    </Screen>
  );
}
