import { useQuery } from '@tanstack/react-query';
import { useApiClient } from './api';

export function useMe() {
  const api = useApiClient();
  return useQuery({ queryKey: ['me'], queryFn: () => api.me() });
}

export function useBilling() {
  const api = useApiClient();
  return useQuery({ queryKey: ['billing'], queryFn: () => api.billing() });
}
