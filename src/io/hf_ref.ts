/**
 * `hf:` model references: `hf:owner/repo[@revision][/path/in/repo]` parsed and checked (`hf_hub.ts` resolves
 * them to local files and re-exports {@link parseHfUri} and {@link HfRef}). Pure: no file system, no network.
 * @module
 */
import { LlmError } from "../errors.ts";

/** A parsed `hf:` reference. */
export interface HfRef {
  /** `owner/name`. */
  repo: string;
  /** Branch, tag or commit; `main` when not given. */
  revision: string;
  /** A file inside the repository; absent for a directory-style model. */
  path?: string;
}

const FORM = "expected hf:owner/repo, hf:owner/repo/path/to/file.gguf or hf:owner/repo@revision/path";
// Hugging Face's own repo-name rule: letters, digits, '-', '_', '.', no leading/trailing '-'/'.', no '--' or
// '..', at most 96 characters. Forbidding '--' is also what keeps the `<owner>--<repo>` cache name unambiguous.
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

function badRef(uri: string, why: string): never {
  throw new LlmError("BAD_REQUEST", `invalid model reference ${JSON.stringify(uri)}: ${why}; ${FORM}`);
}

/** Reject repository paths that could escape the cache folder or that no hub file can have. */
export function checkRepoPath(path: string, fail: (why: string) => never): void {
  for (const seg of path.split("/")) {
    if (seg === "" || seg === "." || seg === "..") {
      fail(`path ${JSON.stringify(path)} has an empty, '.' or '..' part`);
    }
    // deno-lint-ignore no-control-regex
    if (/[\\\x00-\x1f]/.test(seg)) {
      fail(`path ${JSON.stringify(path)} contains a backslash or control character`);
    }
  }
}

/**
 * Parse an `hf:` reference. Throws BAD_REQUEST, explaining the expected form, for anything malformed.
 *
 * @example
 * ```ts
 * parseHfUri("hf:TheBloke/TinyLlama-1.1B-GGUF@main/tinyllama.Q4_0.gguf");
 * // { repo: "TheBloke/TinyLlama-1.1B-GGUF", revision: "main", path: "tinyllama.Q4_0.gguf" }
 * ```
 */
export function parseHfUri(uri: string): HfRef {
  if (typeof uri !== "string" || !uri.startsWith("hf:")) badRef(String(uri), "it does not start with hf:");
  let rest = uri.slice(3);
  if (rest.startsWith("//")) rest = rest.slice(2); // tolerate hf://owner/repo
  const parts = rest.split("/");
  if (parts.length < 2 || parts[0] === "" || parts[1] === "") {
    badRef(uri, "owner and repository are both needed");
  }
  const owner = parts[0];
  let name = parts[1];
  let revision = "main";
  const at = name.indexOf("@");
  if (at >= 0) {
    revision = name.slice(at + 1);
    name = name.slice(0, at);
    if (!REVISION.test(revision) || revision.includes("..")) {
      badRef(
        uri,
        `revision ${JSON.stringify(revision)} is not a branch, tag or commit name (use the commit hash)`,
      );
    }
  }
  for (const n of [owner, name]) {
    if (!NAME.test(n) || n.includes("--") || n.includes("..")) {
      badRef(uri, `${JSON.stringify(n)} is not a valid Hugging Face owner or repository name`);
    }
  }
  const path = parts.slice(2).join("/");
  if (path !== "") checkRepoPath(path, (why) => badRef(uri, why));
  const out: HfRef = { repo: `${owner}/${name}`, revision };
  if (path !== "") out.path = path;
  return out;
}
