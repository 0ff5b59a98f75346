import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import './index.css';
import { App } from './app/App';
import { OutsideTelegram } from './app/Outside';
import { parseLaunchParams, readLaunchFragment } from './telegram/launchParams';
import { startTelegram } from './telegram/sdk';

async function boot(): Promise<void> {
  const root = createRoot(document.getElementById('root') as HTMLElement);
  let fragment = readLaunchFragment();
  if (import.meta.env.DEV && !fragment.includes('tgWebAppData=')) {
    // Development-only launch simulation; `import.meta.env.DEV` is false in a build, so
    // this branch and the dev module are dropped from dist/.
    const dev = await import('./dev/DevLaunch');
    const env = dev.devFragmentFromEnv();
    if (env) {
      window.location.hash = env.slice(1);
      fragment = env;
    } else {
      root.render(<dev.DevLaunch />);
      return;
    }
  }
  const info = parseLaunchParams(fragment);
  if (!info) {
    root.render(
      <StrictMode>
        <OutsideTelegram />
      </StrictMode>,
    );
    return;
  }
  startTelegram(info);
  root.render(
    <StrictMode>
      <App info={info} />
    </StrictMode>,
  );
}

void boot();
