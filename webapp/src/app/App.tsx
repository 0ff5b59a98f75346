import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { QueryClient, QueryClientProvider, useQuery } from '@tanstack/react-query';
import { ApiClient, isApiError } from '../api/client';
import { I18nProvider, useI18n } from '../i18n';
import { langFromCode, type Lang } from '../i18n/format';
import { LaunchCtx, useLaunch, type Launch } from '../telegram/context';
import { useBackButton } from '../telegram/hooks';
import { hasDownloadFile, hasNativeMainButton, type LaunchInfo } from '../telegram/launchParams';
import { ApiCtx, useApiClient } from './api';
import type { Nav, Route } from './nav';
import { NavCtx } from './navContext';
import { Button, ErrorMessage, Spinner } from '../ui/ui';
import { HomeScreen } from '../features/home/HomeScreen';

const TryonScreen = lazy(() => import('../features/tryon/TryonScreen'));
const ProgressScreen = lazy(() => import('../features/tryon/ProgressScreen'));
const ResultScreen = lazy(() => import('../features/tryon/ResultScreen'));
const HistoryScreen = lazy(() => import('../features/history/HistoryScreen'));
const WalletScreen = lazy(() => import('../features/wallet/WalletScreen'));

function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 15_000,
        refetchOnWindowFocus: false,
        retry: (n, e) => n < 2 && isApiError(e) && (e.offline || e.status >= 500),
      },
      mutations: { retry: false },
    },
  });
}

export function App(props: { info: LaunchInfo }) {
  const { info } = props;
  const api = useMemo(() => new ApiClient({ initData: info.initData }), [info.initData]);
  const qc = useMemo(makeQueryClient, []);
  const [lang, setLangState] = useState<Lang>(() => langFromCode(info.languageCode));
  const setLang = useCallback((l: Lang) => {
    setLangState(l);
    document.documentElement.lang = l;
  }, []);
  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);
  const launch = useMemo<Launch>(
    () => ({ info, nativeMainButton: hasNativeMainButton(info), canDownload: hasDownloadFile(info) }),
    [info],
  );
  return (
    <LaunchCtx.Provider value={launch}>
      <ApiCtx.Provider value={api}>
        <QueryClientProvider client={qc}>
          <I18nProvider lang={lang} setLang={setLang}>
            <SignedIn />
          </I18nProvider>
        </QueryClientProvider>
      </ApiCtx.Provider>
    </LaunchCtx.Provider>
  );
}

function SignedIn() {
  const { t } = useI18n();
  const [stack, setStack] = useState<Route[]>([{ name: 'home' }]);
  const route = stack[stack.length - 1] ?? { name: 'home' };
  const intercept = useRef<(() => boolean) | null>(null);
  const nav = useMemo<Nav>(
    () => ({
      route,
      depth: stack.length,
      push: (r) => setStack((s) => [...s, r]),
      replace: (r) => setStack((s) => [...s.slice(0, -1), r]),
      back: () => {
        if (intercept.current?.()) return;
        setStack((s) => (s.length > 1 ? s.slice(0, -1) : s));
      },
      home: () => setStack([{ name: 'home' }]),
      setBackInterceptor: (fn) => {
        intercept.current = fn;
      },
    }),
    [route, stack.length],
  );
  const { nativeMainButton } = useLaunch();
  useBackButton(stack.length > 1 ? nav.back : null);
  useEffect(() => {
    window.scrollTo(0, 0);
  }, [route]);

  const api = useApiClient();
  const auth = useQuery({ queryKey: ['auth'], queryFn: () => api.signIn(), staleTime: Infinity, retry: false });
  if (auth.isPending) return <Spinner label={t('loading')} />;
  if (auth.isError)
    return (
      <main className="p-4">
        <ErrorMessage error={auth.error} onRetry={() => void auth.refetch()} />
      </main>
    );

  return (
    <NavCtx.Provider value={nav}>
      {!nativeMainButton && stack.length > 1 && (
        <nav className="mx-auto max-w-xl px-4 pt-2">
          <Button onClick={nav.back}>← {t('back')}</Button>
        </nav>
      )}
      <Suspense fallback={<Spinner label={t('loading')} />}>
        {route.name === 'home' && <HomeScreen />}
        {route.name === 'tryon' && <TryonScreen person={route.person ?? null} />}
        {route.name === 'progress' && <ProgressScreen route={route} />}
        {route.name === 'result' && <ResultScreen id={route.id} person={route.person} />}
        {route.name === 'history' && <HistoryScreen />}
        {route.name === 'wallet' && <WalletScreen need={route.need ?? null} />}
      </Suspense>
    </NavCtx.Provider>
  );
}

