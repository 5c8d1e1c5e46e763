/**
 * Invariant checks for the engines. A failed assertion is a bug in our code, never a reaction to
 * bad input: input is validated and answered with a ScoutfsError instead.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = "AssertionError";
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionError(message);
}
