/** How reconnection delays grow. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter. Default 250 ms. */
  minDelayMs?: number
  /** Largest delay, before jitter. Default 10 s. */
  maxDelayMs?: number
  /** Growth per failed attempt. Default 2. */
  factor?: number
  /**
   * Fraction of each delay that is random, 0 to 1. Default 0.5: a delay
   * lies between half and all of its nominal value, so clients that lost
   * the same server do not all come back in the same millisecond.
   */
  jitter?: number
}

/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay (attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const min = options.minDelayMs ?? 250
  const max = options.maxDelayMs ?? 10_000
  const factor = options.factor ?? 2
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5))
  const nominal = Math.min(max, min * factor ** Math.max(0, attempt))
  return nominal * (1 - jitter) + nominal * jitter * random()
}
