/**
 * Deno file-system byte sources. Runtime-specific: only `src/io/` touches Deno APIs.
 * @module
 */
import { type ByteSource, checkRange } from "./byte_source.ts";
import { LlmError } from "../errors.ts";

/**
 * A file-system error for reading `path` as an LlmError that names the path and the next step
 * (NOT_FOUND when missing; BAD_REQUEST for a directory, a missing permission or another OS error).
 */
export function readError(path: string, e: unknown): LlmError {
  if (e instanceof LlmError) return e;
  if (e instanceof Deno.errors.NotFound) {
    return new LlmError("NOT_FOUND", `${path}: no such file; check the path`, { cause: e });
  }
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    return new LlmError(
      "BAD_REQUEST",
      `${path}: read permission denied; check the file's permissions (and run deno with --allow-read)`,
      { cause: e },
    );
  }
  if (e instanceof Deno.errors.IsADirectory) {
    return new LlmError("BAD_REQUEST", `${path} is a directory; pass the path of a file`, { cause: e });
  }
  return new LlmError(
    "BAD_REQUEST",
    `${path}: cannot read it (${(e as Error)?.message ?? e}); check the path`,
    {
      cause: e,
    },
  );
}

/** Open a file as a random-access source; throws NOT_FOUND with the path when it is missing. */
export async function fileSource(path: string): Promise<ByteSource> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw readError(path, e);
  }
  const stat = await file.stat();
  if (!stat.isFile) {
    file.close();
    throw new LlmError(
      "BAD_REQUEST",
      `${path} is not a regular file (${
        stat.isDirectory ? "a directory" : "a device, pipe or socket"
      }); pass the path of a file`,
    );
  }
  const size = stat.size;
  let closed = false;
  // One outstanding read at a time: seek+read on a shared handle must not interleave.
  let chain: Promise<unknown> = Promise.resolve();
  return {
    name: path,
    size,
    read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(path, size, offset, length);
      const p = chain.then(async () => {
        if (closed) throw new LlmError("INTERNAL", `${path}: read after close`);
        const out = new Uint8Array(length);
        await file.seek(offset, Deno.SeekMode.Start);
        let got = 0;
        while (got < length) {
          const n = await file.read(out.subarray(got));
          if (n === null) {
            throw new LlmError(
              "MODEL_FORMAT",
              `${path}: file ended at ${offset + got} while reading; it is truncated`,
            );
          }
          got += n;
        }
        return out;
      });
      chain = p.catch(() => {});
      return p;
    },
    close(): void {
      if (!closed) {
        closed = true;
        file.close();
      }
    },
  };
}

/** Whether a path is a directory (false when missing). */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Read a whole small text file (config.json, tokenizer.json, a chat template, an eval text): NOT_FOUND
 * when missing, BAD_REQUEST for a directory or another read error.
 */
export async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw readError(path, e);
  }
}
