import type { LedgerEntry } from '../api/types';

export type Lang = 'ru' | 'en';

/** ru for a Russian-speaking user (ru, be, uk, kk), en for everyone else. */
export function langFromCode(code: string | null | undefined): Lang {
  if (!code) return 'en';
  const base = code.toLowerCase().split(/[-_]/)[0];
  return base === 'ru' || base === 'be' || base === 'uk' || base === 'kk' ? 'ru' : 'en';
}

const NBSP = '\u00a0';
const MINUS = '\u2212';

function group(n: number, sep: string): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, sep);
}

/** Kopecks to rubles: 29900 → "299 ₽", 29950 → "299,50 ₽" (ru) / "299.50 ₽" (en). */
export function formatMoney(kopecks: number, lang: Lang): string {
  const neg = kopecks < 0;
  const abs = Math.abs(Math.trunc(kopecks));
  const rub = Math.floor(abs / 100);
  const kop = abs % 100;
  const whole = group(rub, lang === 'ru' ? NBSP : ',');
  const frac = kop === 0 ? '' : (lang === 'ru' ? ',' : '.') + String(kop).padStart(2, '0');
  return (neg ? MINUS : '') + whole + frac + NBSP + '₽';
}

/** A signed credit delta: +10, −2, 0. */
export function formatDelta(delta: number): string {
  if (delta > 0) return '+' + delta;
  if (delta < 0) return MINUS + Math.abs(delta);
  return '0';
}

export type Zone = 'local' | 'utc' | 'moscow';

interface Parts {
  y: number;
  m: number; // 0-11
  d: number;
  hh: number;
  mm: number;
}

function parts(iso: string, zone: Zone): Parts | null {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return null;
  if (zone === 'local') {
    const d = new Date(t);
    return { y: d.getFullYear(), m: d.getMonth(), d: d.getDate(), hh: d.getHours(), mm: d.getMinutes() };
  }
  // Moscow has been UTC+3 all year since 2014.
  const d = new Date(t + (zone === 'moscow' ? 3 * 3600_000 : 0));
  return {
    y: d.getUTCFullYear(),
    m: d.getUTCMonth(),
    d: d.getUTCDate(),
    hh: d.getUTCHours(),
    mm: d.getUTCMinutes(),
  };
}

const MONTHS: Record<Lang, { name: string[]; of: string[] }> = {
  en: {
    name: 'January February March April May June July August September October November December'.split(' '),
    of: 'January February March April May June July August September October November December'.split(' '),
  },
  ru: {
    name: 'январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь'.split(' '),
    of: 'января февраля марта апреля мая июня июля августа сентября октября ноября декабря'.split(' '),
  },
};

/** "28 November 2025" / "28 ноября 2025". */
export function formatDate(iso: string, lang: Lang, zone: Zone = 'local'): string {
  const p = parts(iso, zone);
  if (!p) return '';
  return `${p.d} ${MONTHS[lang].of[p.m]} ${p.y}`;
}

/** "28 November 2025, 20:48" / "28 ноября 2025, 20:48". */
export function formatDateTime(iso: string, lang: Lang, zone: Zone = 'local'): string {
  const p = parts(iso, zone);
  if (!p) return '';
  const hm = String(p.hh).padStart(2, '0') + ':' + String(p.mm).padStart(2, '0');
  return `${formatDate(iso, lang, zone)}, ${hm}`;
}

/** The month's name as a word on its own ("December" / "декабрь"), in Moscow time. */
export function monthName(iso: string, lang: Lang): string {
  const p = parts(iso, 'moscow');
  return p ? (MONTHS[lang].name[p.m] ?? '') : '';
}

/** Elapsed seconds as "0:07", "1:05". */
export function formatElapsed(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Russian plural form index: 1 кредит, 2 кредита, 5 кредитов. */
export function ruPlural(n: number): 0 | 1 | 2 {
  const a = Math.abs(n) % 100;
  const b = a % 10;
  if (a > 10 && a < 20) return 2;
  if (b === 1) return 0;
  if (b >= 2 && b <= 4) return 1;
  return 2;
}

/** The word for n credits alone: "credit"/"credits", "кредит"/"кредита"/"кредитов". */
export function creditWord(n: number, lang: Lang): string {
  if (lang === 'ru') return ['кредит', 'кредита', 'кредитов'][ruPlural(n)] ?? 'кредитов';
  return Math.abs(n) === 1 ? 'credit' : 'credits';
}

export function credits(n: number, lang: Lang): string {
  return `${n} ${creditWord(n, lang)}`;
}

/** A ledger entry in plain words: "Try-on −2", "Refund — failed try-on +2", … */
export function ledgerLabel(e: Pick<LedgerEntry, 'reason' | 'created_at'>, lang: Lang): string {
  const ru = lang === 'ru';
  switch (e.reason) {
    case 'free_grant': {
      const month = e.created_at ? monthName(e.created_at, lang) : '';
      return ru ? `Бесплатные кредиты за ${month}` : `Free credits for ${month}`;
    }
    case 'subscription_grant':
      return ru ? 'Кредиты подписки' : 'Subscription credits';
    case 'purchase':
      return ru ? 'Покупка пакета' : 'Pack purchase';
    case 'charge':
      return ru ? 'Примерка' : 'Try-on';
    case 'refund':
      return ru ? 'Возврат — примерка не удалась' : 'Refund — failed try-on';
    case 'grant':
      return ru ? 'Начислено поддержкой' : 'Added by support';
    case 'revoke':
      return ru ? 'Списано поддержкой' : 'Removed by support';
    case 'expire':
      return ru ? 'Сгорели неиспользованные кредиты' : 'Unused credits expired';
    default:
      return ru ? 'Изменение баланса' : 'Balance change';
  }
}

/** The whole line: label and signed delta. */
export function ledgerLine(e: Pick<LedgerEntry, 'reason' | 'created_at' | 'delta'>, lang: Lang): string {
  return `${ledgerLabel(e, lang)} ${formatDelta(e.delta ?? 0)}`;
}
