// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void

/** A small typed event emitter: `on` returns the function that unsubscribes. */
export class Emitter<Events extends Record<string, unknown[]>> {
  private readonly listeners = new Map<keyof Events, Set<Listener>>()

  /** Calls `listener` on every `event`; returns a function that stops it. */
  on<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(event, set)
    }
    set.add(listener as Listener)
    return () => this.off(event, listener)
  }

  /** Calls `listener` on the next `event` only. */
  once<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): () => void {
    const off = this.on(event, (...args) => {
      off()
      listener(...args)
    })
    return off
  }

  /** Stops calling `listener`. */
  off<E extends keyof Events> (event: E, listener: (...args: Events[E]) => void): void {
    this.listeners.get(event)?.delete(listener as Listener)
  }

  protected emit<E extends keyof Events> (event: E, ...args: Events[E]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      // A listener that throws must not stop the others, nor the protocol
      // work that emitted the event.
      try {
        listener(...args)
      } catch (error) {
        queueMicrotask(() => { throw error })
      }
    }
  }

  protected removeAllListeners (): void {
    this.listeners.clear()
  }
}
