// The summaries the benchmarks print: a sample's min, median (the mean of the middle two for
// an even count) and max.

export function minMedianMax(xs: readonly number[]): { min: number; median: number; max: number } {
  if (xs.length === 0) throw new Error("no samples");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { min: s[0]!, median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, max: s[s.length - 1]! };
}

export const median = (xs: readonly number[]): number => minMedianMax(xs).median;
