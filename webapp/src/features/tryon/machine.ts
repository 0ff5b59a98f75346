import type { AspectRatio, Category, OutputFormat, Upload } from '../../api/types';

/** The try-on quiz as a pure state machine; the screen renders a state and dispatches events. */
export type Step = 'person' | 'item' | 'category' | 'options' | 'confirm';
export const STEPS: readonly Step[] = ['person', 'item', 'category', 'options', 'confirm'];

export interface QuizState {
  step: Step;
  person: Upload | null;
  item: Upload | null;
  category: Category | null;
  aspectRatio: AspectRatio;
  outputFormat: OutputFormat;
  /** One key per try-on the user confirms; a retry of the same submit reuses it. */
  idempotencyKey: string | null;
}

export type QuizEvent =
  | { type: 'person'; upload: Upload }
  | { type: 'item'; upload: Upload }
  | { type: 'category'; category: Category }
  | { type: 'aspect'; value: AspectRatio }
  | { type: 'format'; value: OutputFormat }
  | { type: 'next' }
  | { type: 'back' }
  | { type: 'submitting'; key: string }
  | { type: 'submitted' }
  | { type: 'another_item' }
  | { type: 'reset' };

export function initialQuiz(person: Upload | null = null): QuizState {
  return {
    step: person ? 'item' : 'person',
    person,
    item: null,
    category: null,
    aspectRatio: 'auto',
    outputFormat: 'png',
    idempotencyKey: null,
  };
}

/** Whether the current step has what it needs to go on. */
export function canAdvance(s: QuizState): boolean {
  switch (s.step) {
    case 'person':
      return s.person !== null;
    case 'item':
      return s.item !== null;
    case 'category':
      return s.category !== null;
    case 'options':
      return true;
    case 'confirm':
      return s.person !== null && s.item !== null && s.category !== null;
  }
}

/** The step before, or null when back leaves the quiz. */
export function previousStep(step: Step): Step | null {
  const i = STEPS.indexOf(step);
  return i > 0 ? (STEPS[i - 1] ?? null) : null;
}

export function quizReducer(s: QuizState, e: QuizEvent): QuizState {
  switch (e.type) {
    case 'person':
      // A new person photo that is the item photo would be refused by the server; drop the item.
      return { ...s, person: e.upload, item: s.item?.id === e.upload.id ? null : s.item, idempotencyKey: null };
    case 'item':
      return { ...s, item: e.upload, idempotencyKey: null };
    case 'category':
      return { ...s, category: e.category, idempotencyKey: null };
    case 'aspect':
      return { ...s, aspectRatio: e.value, idempotencyKey: null };
    case 'format':
      return { ...s, outputFormat: e.value, idempotencyKey: null };
    case 'next': {
      if (!canAdvance(s)) return s;
      const i = STEPS.indexOf(s.step);
      const next = STEPS[i + 1];
      return next ? { ...s, step: next } : s;
    }
    case 'back': {
      const prev = previousStep(s.step);
      return prev ? { ...s, step: prev } : s;
    }
    case 'submitting':
      return { ...s, idempotencyKey: s.idempotencyKey ?? e.key };
    case 'submitted':
      return { ...s, idempotencyKey: null };
    case 'another_item':
      return { ...initialQuiz(s.person), aspectRatio: s.aspectRatio, outputFormat: s.outputFormat };
    case 'reset':
      return initialQuiz();
  }
}
