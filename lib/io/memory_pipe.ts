/**
 * An in-memory full-duplex byte pipe: two ends, each with a readable and a writable stream,
 * where what one end writes the other reads. For tests of code that normally runs over TCP.
 * @module
 */

/** One end of a {@link memoryPipe}. */
export interface PipeEnd {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/**
 * Creates a connected pair of ends. Chunks are copied so a writer may reuse its buffer. Like a
 * socket buffer, each direction holds up to `bufferBytes` unread bytes before a write waits:
 * without that, two sides that both write before they read would wait on each other forever.
 */
export function memoryPipe(bufferBytes = 4 << 20): [PipeEnd, PipeEnd] {
  const strategy = new ByteLengthQueuingStrategy({ highWaterMark: bufferBytes });
  const copy = () =>
    new TransformStream<Uint8Array, Uint8Array>(
      {
        transform(chunk, controller) {
          controller.enqueue(chunk.slice());
        },
      },
      strategy,
      strategy,
    );
  const aToB = copy();
  const bToA = copy();
  return [
    { readable: bToA.readable, writable: aToB.writable },
    { readable: aToB.readable, writable: bToA.writable },
  ];
}
