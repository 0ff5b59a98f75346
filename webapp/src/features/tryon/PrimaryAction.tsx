import { useMainButton } from '../../telegram/hooks';
import { Button } from '../../ui/ui';

/**
 * The step's primary action: Telegram's MainButton where the client has one, else (or as
 * well, where it does not) an in-page button with the stable hook `primary-action`.
 */
export function PrimaryAction(props: { text: string; enabled: boolean; loading?: boolean; onClick: () => void }) {
  const native = useMainButton({ text: props.text, enabled: props.enabled, loading: props.loading, onClick: props.onClick });
  if (native) return null;
  return (
    <div className="sticky bottom-0 mt-4 bg-bg py-3">
      <Button
        data-testid="primary-action"
        variant="primary"
        className="w-full"
        disabled={!props.enabled || props.loading}
        aria-busy={props.loading ? true : undefined}
        onClick={props.onClick}
      >
        {props.text}
      </Button>
    </div>
  );
}
