/**
 * Virtual-id allocation (spec 6.6): LocalId = unix seconds << 32 | a process-wide counter, as
 * YDB's AllocateIDSpace does, and strictly increasing: the Serial of a request is this LocalId
 * and the proxy's "too old" / "duplicate" rules rely on it growing.
 * @module
 */
import { ActorId } from "../wire/actor_id.ts";

const U32 = 0xffffffffn;

/** Allocates strictly increasing LocalIds and the virtual ids built from them. */
export class VirtualIdAllocator {
  #last = 0n;
  #counter = 0n;

  constructor(
    /** Unix time in seconds; injectable for tests. */
    readonly nowSeconds: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  /** The next LocalId: (seconds << 32 | counter), never equal to or below the previous one. */
  nextLocalId(): bigint {
    this.#counter = (this.#counter + 1n) & U32;
    if (this.#counter === 0n) this.#counter = 1n; // the counter wrapped: skip zero, as YDB does
    let id = (BigInt(this.nowSeconds()) << 32n) | this.#counter;
    if (id <= this.#last) id = this.#last + 1n; // clock went back or the counter wrapped
    this.#last = id;
    return id;
  }

  /** A fresh virtual id `[nodeId:LocalId:0]` (pool 0, hint 0). */
  next(nodeId: number): ActorId {
    return ActorId.plain(nodeId, this.nextLocalId());
  }
}
