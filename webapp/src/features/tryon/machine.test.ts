import { describe, expect, it } from 'vitest';
import type { Upload } from '../../api/types';
import { canAdvance, initialQuiz, previousStep, quizReducer, type QuizState } from './machine';

const up = (id: string): Upload => ({ id, mime: 'image/jpeg', width: 10, height: 10, bytes: 1, url: '/f/' + id, thumb_url: '/t/' + id });

describe('quiz state machine', () => {
  it('walks person → item → category → options → confirm, only with what each step needs', () => {
    let s = initialQuiz();
    expect(s.step).toBe('person');
    s = quizReducer(s, { type: 'next' });
    expect(s.step).toBe('person');
    s = quizReducer(s, { type: 'person', upload: up('p') });
    s = quizReducer(s, { type: 'next' });
    expect(s.step).toBe('item');
    expect(canAdvance(s)).toBe(false);
    s = quizReducer(s, { type: 'item', upload: up('i') });
    s = quizReducer(s, { type: 'next' });
    expect(s.step).toBe('category');
    s = quizReducer(s, { type: 'next' });
    expect(s.step).toBe('category');
    s = quizReducer(s, { type: 'category', category: 'shoes' });
    s = quizReducer(s, { type: 'next' });
    expect(s.step).toBe('options');
    s = quizReducer(s, { type: 'aspect', value: '3:4' });
    s = quizReducer(s, { type: 'format', value: 'jpeg' });
    s = quizReducer(s, { type: 'next' });
    expect(s).toMatchObject({ step: 'confirm', aspectRatio: '3:4', outputFormat: 'jpeg', category: 'shoes' });
    expect(canAdvance(s)).toBe(true);
    expect(quizReducer(s, { type: 'next' }).step).toBe('confirm');
  });

  it('back goes one step, never before the first', () => {
    expect(previousStep('person')).toBeNull();
    expect(previousStep('confirm')).toBe('options');
    const s = quizReducer({ ...initialQuiz(up('p')), step: 'category' }, { type: 'back' });
    expect(s.step).toBe('item');
    expect(quizReducer(initialQuiz(), { type: 'back' }).step).toBe('person');
  });

  it('keeps one idempotency key across a retried submit; a change or a success drops it', () => {
    let s: QuizState = { ...initialQuiz(up('p')), item: up('i'), category: 'top', step: 'confirm' };
    s = quizReducer(s, { type: 'submitting', key: 'k1' });
    s = quizReducer(s, { type: 'submitting', key: 'k2' });
    expect(s.idempotencyKey).toBe('k1');
    expect(quizReducer(s, { type: 'format', value: 'jpeg' }).idempotencyKey).toBeNull();
    expect(quizReducer(s, { type: 'submitted' }).idempotencyKey).toBeNull();
  });

  it('"try another item" keeps the person photo and starts at the item', () => {
    let s: QuizState = { ...initialQuiz(up('p')), item: up('i'), category: 'top', step: 'confirm', outputFormat: 'jpeg' };
    s = quizReducer(s, { type: 'another_item' });
    expect(s).toMatchObject({ step: 'item', item: null, category: null, outputFormat: 'jpeg' });
    expect(s.person?.id).toBe('p');
  });

  it('choosing as person the photo picked as item drops the item', () => {
    let s: QuizState = { ...initialQuiz(up('a')), item: up('b') };
    s = quizReducer(s, { type: 'person', upload: up('b') });
    expect(s.item).toBeNull();
  });
});
