/**
 * The `cli.ts serve` arguments of the serve benches: those after `--` on their command line, or by
 * default stories260K from the shared models folder on the ref backend.
 */
export function serveArgs(args: readonly string[]): string[] {
  const sep = args.indexOf("--");
  if (sep >= 0 && sep + 1 < args.length) return args.slice(sep + 1);
  const models = new URL("../../shared/models/", import.meta.url).pathname;
  return ["--model", `${models}stories260K.bin`, "--tokenizer", `${models}tok512.bin`, "--backend", "ref"];
}
