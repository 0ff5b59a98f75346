import { useEffect, useRef } from 'react';
import { backButton, mainButton } from './sdk';
import { useLaunch } from './context';

/** Telegram's BackButton shown while `onBack` is set; pressing it calls it. */
export function useBackButton(onBack: (() => void) | null): void {
  const ref = useRef(onBack);
  ref.current = onBack;
  const visible = onBack !== null;
  useEffect(() => {
    try {
      if (!backButton.isMounted()) return;
      if (visible) backButton.show();
      else backButton.hide();
    } catch {
      return;
    }
    if (!visible) return;
    let off: VoidFunction | undefined;
    try {
      off = backButton.onClick(() => ref.current?.());
    } catch {
      off = undefined;
    }
    return () => off?.();
  }, [visible]);
}

export interface PrimaryParams {
  text: string;
  enabled: boolean;
  loading?: boolean;
  onClick: () => void;
}

/**
 * The step's primary action on Telegram's MainButton (with its progress state). Returns
 * whether the native button is in use; when it is not, the caller renders an in-page one.
 */
export function useMainButton(p: PrimaryParams | null): boolean {
  const { nativeMainButton } = useLaunch();
  const ref = useRef(p?.onClick);
  ref.current = p?.onClick;
  const active = nativeMainButton && p !== null;
  const text = p?.text ?? '';
  const enabled = p?.enabled ?? false;
  const loading = p?.loading ?? false;

  useEffect(() => {
    if (!nativeMainButton) return;
    try {
      if (!mainButton.isMounted()) return;
      mainButton.setParams(
        active
          ? { text, isVisible: true, isEnabled: enabled && !loading, isLoaderVisible: loading }
          : { isVisible: false, isLoaderVisible: false },
      );
    } catch {
      /* the client refused: nothing to show */
    }
  }, [nativeMainButton, active, text, enabled, loading]);

  useEffect(() => {
    if (!active) return;
    let off: VoidFunction | undefined;
    try {
      off = mainButton.onClick(() => ref.current?.());
    } catch {
      off = undefined;
    }
    return () => {
      off?.();
    };
  }, [active]);

  useEffect(
    () => () => {
      if (!nativeMainButton) return;
      try {
        if (mainButton.isMounted()) mainButton.setParams({ isVisible: false, isLoaderVisible: false });
      } catch {
        /* gone */
      }
    },
    [nativeMainButton],
  );

  return nativeMainButton;
}
