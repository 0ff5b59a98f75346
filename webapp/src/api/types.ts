import type { components, paths } from './schema';

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never;

export type User = components['schemas']['User'];
export type Balance = components['schemas']['Balance'];
export type Upload = components['schemas']['Upload'];
export type Generation = components['schemas']['Generation'];
export type Job = components['schemas']['Job'];
export type Category = components['schemas']['Category'];
export type AspectRatio = components['schemas']['AspectRatio'];
export type OutputFormat = components['schemas']['OutputFormat'];
export type ErrorBody = components['schemas']['Error'];
export type InsufficientCredits = components['schemas']['InsufficientCredits'];

export type AuthResponse = Json<paths['/api/auth/telegram']['post']['responses']['200']>;
export type MeResponse = Json<paths['/api/me']['get']['responses']['200']>;
export type BillingResponse = Json<paths['/api/billing']['get']['responses']['200']>;
export type Product = BillingResponse['products'][number];
export type LedgerEntry = BillingResponse['history'][number];
export type UploadsPage = Json<paths['/api/uploads']['get']['responses']['200']>;
export type GenerationsPage = Json<paths['/api/generations']['get']['responses']['200']>;
export type TryonRequest = NonNullable<
  paths['/api/tryon']['post']['requestBody']
>['content']['application/json'];
export type TryonResponse = Json<paths['/api/tryon']['post']['responses']['202']>;

/** The ten categories, in the order the quiz shows them (the schema's enum order). */
export const CATEGORIES = [
  'top',
  'bottom',
  'dress',
  'outerwear',
  'shoes',
  'headwear',
  'glasses',
  'bag',
  'jewelry',
  'other',
] as const satisfies readonly Category[];

// A compile-time check that CATEGORIES lists every Category of the schema.
type Missing = Exclude<Category, (typeof CATEGORIES)[number]>;
const _allCategories: Missing extends never ? true : Missing = true;
void _allCategories;

export const ASPECT_RATIOS = [
  'auto',
  '1:1',
  '9:16',
  '16:9',
  '3:4',
  '4:3',
  '3:2',
  '2:3',
  '5:4',
  '4:5',
  '21:9',
] as const satisfies readonly AspectRatio[];
type MissingRatio = Exclude<AspectRatio, (typeof ASPECT_RATIOS)[number]>;
const _allRatios: MissingRatio extends never ? true : MissingRatio = true;
void _allRatios;

export const OUTPUT_FORMATS = ['png', 'jpeg'] as const satisfies readonly OutputFormat[];
