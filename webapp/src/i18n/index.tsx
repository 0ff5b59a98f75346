import { createContext, useContext, useMemo, type ReactNode } from 'react';
import { DICTS, interpolate, type Key } from './strings';
import type { Lang } from './format';

export type T = (key: Key, vars?: Record<string, string | number>) => string;

interface I18n {
  lang: Lang;
  t: T;
  setLang: (l: Lang) => void;
}

const Ctx = createContext<I18n | null>(null);

export function makeT(lang: Lang): T {
  const d = DICTS[lang];
  return (key, vars) => interpolate(d[key], vars);
}

export function I18nProvider(props: { lang: Lang; setLang: (l: Lang) => void; children: ReactNode }) {
  const { lang, setLang } = props;
  const value = useMemo<I18n>(() => ({ lang, setLang, t: makeT(lang) }), [lang, setLang]);
  return <Ctx.Provider value={value}>{props.children}</Ctx.Provider>;
}

export function useI18n(): I18n {
  const v = useContext(Ctx);
  if (!v) throw new Error('useI18n outside I18nProvider');
  return v;
}
