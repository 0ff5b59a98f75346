import { describe, expect, it } from 'vitest';
import { creditWord, credits, formatDate, formatDateTime, formatElapsed, formatMoney, langFromCode, ledgerLine } from './format';
import { DICTS } from './strings';

describe('formatting', () => {
  it('money from kopecks', () => {
    expect(formatMoney(29900, 'ru')).toBe('299\u00a0₽');
    expect(formatMoney(29900, 'en')).toBe('299\u00a0₽');
    expect(formatMoney(29950, 'ru')).toBe('299,50\u00a0₽');
    expect(formatMoney(29950, 'en')).toBe('299.50\u00a0₽');
    expect(formatMoney(129900, 'ru')).toBe('1\u00a0299\u00a0₽');
    expect(formatMoney(129900, 'en')).toBe('1,299\u00a0₽');
    expect(formatMoney(0, 'en')).toBe('0\u00a0₽');
  });

  it('dates in both languages', () => {
    expect(formatDate('2025-11-28T20:48:00Z', 'en', 'utc')).toBe('28 November 2025');
    expect(formatDate('2025-11-28T20:48:00Z', 'ru', 'utc')).toBe('28 ноября 2025');
    expect(formatDateTime('2025-11-28T20:48:00Z', 'ru', 'moscow')).toBe('28 ноября 2025, 23:48');
    expect(formatDate('nonsense', 'en')).toBe('');
    // The free month ends at Moscow midnight: it renews on the 1st, seen from anywhere.
    expect(formatDate('2026-12-31T21:00:00Z', 'en', 'moscow')).toBe('1 January 2027');
    expect(formatDate('2026-12-31T21:00:00Z', 'ru', 'moscow')).toBe('1 января 2027');
  });

  it('credits with Russian plurals', () => {
    expect(credits(1, 'ru')).toBe('1 кредит');
    expect(credits(2, 'ru')).toBe('2 кредита');
    expect(credits(5, 'ru')).toBe('5 кредитов');
    expect(credits(11, 'ru')).toBe('11 кредитов');
    expect(credits(21, 'ru')).toBe('21 кредит');
    expect(credits(1, 'en')).toBe('1 credit');
    expect(credits(2, 'en')).toBe('2 credits');
    // The word alone, next to a big number (home, wallet, the confirm step).
    expect(creditWord(1, 'en')).toBe('credit');
    expect(creditWord(10, 'en')).toBe('credits');
    expect(creditWord(2, 'ru')).toBe('кредита');
    expect(creditWord(10, 'ru')).toBe('кредитов');
  });

  it('ledger entries in plain words', () => {
    expect(ledgerLine({ reason: 'charge', delta: -2, created_at: '2025-12-03T10:00:00Z' }, 'en')).toBe('Try-on \u22122');
    expect(ledgerLine({ reason: 'refund', delta: 2, created_at: '2025-12-03T10:00:00Z' }, 'en')).toBe('Refund — failed try-on +2');
    // 30 Nov 22:00 UTC is already 1 December in Moscow: the December grant.
    expect(ledgerLine({ reason: 'free_grant', delta: 10, created_at: '2025-11-30T22:00:00Z' }, 'en')).toBe('Free credits for December +10');
    expect(ledgerLine({ reason: 'free_grant', delta: 10, created_at: '2025-12-01T00:00:00Z' }, 'ru')).toBe('Бесплатные кредиты за декабрь +10');
    expect(ledgerLine({ reason: 'charge', delta: -2, created_at: '2025-12-03T10:00:00Z' }, 'ru')).toBe('Примерка \u22122');
    expect(ledgerLine({ reason: 'expire', delta: -3, created_at: '2025-12-03T10:00:00Z' }, 'en')).toBe('Unused credits expired \u22123');
  });

  it('elapsed time and language choice', () => {
    expect(formatElapsed(7)).toBe('0:07');
    expect(formatElapsed(65.9)).toBe('1:05');
    expect(langFromCode('ru')).toBe('ru');
    expect(langFromCode('uk-UA')).toBe('ru');
    expect(langFromCode('de')).toBe('en');
    expect(langFromCode(undefined)).toBe('en');
  });

  it('both dictionaries have every key, none empty', () => {
    for (const k of Object.keys(DICTS.en) as (keyof typeof DICTS.en)[]) {
      expect(DICTS.ru[k], k).toBeTruthy();
      expect(DICTS.en[k], k).toBeTruthy();
    }
  });
});
