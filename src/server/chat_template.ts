/**
 * Chat prompts: the model's own Jinja chat template (GGUF `tokenizer.chat_template`, HF
 * tokenizer_config.json) rendered with @huggingface/jinja, or a plain-text fallback for models without
 * one (llama2.c checkpoints, base models). The fallback also gives a stop string so a base model does not
 * write the user's next turn.
 * @module
 */
import { Template } from "@huggingface/jinja";
import { LlmError } from "../errors.ts";
import type { ChatMessage } from "./openai_request.ts";

/**
 * The fallback: a system message as a preamble, then "User:" / "Assistant:" turns, ending with an open
 * "Assistant:" turn. Plain words, so any vocabulary can encode it.
 */
export const FALLBACK_CHAT_TEMPLATE: string = "{% for m in messages %}" +
  "{% if m.role == 'system' or m.role == 'developer' %}{{ m.content }}\n\n" +
  "{% elif m.role == 'user' or m.role == 'tool' %}User: {{ m.content }}\n" +
  "{% else %}Assistant: {{ m.content }}\n{% endif %}" +
  "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}";

/** Stop strings that go with the fallback template. */
export const FALLBACK_CHAT_STOPS: readonly string[] = ["\nUser:"];

/** A compiled chat template. */
export class ChatTemplate {
  /** Whether this is the built-in fallback (the model had none). */
  readonly isFallback: boolean;
  /** Stop strings the template implies (the fallback's; none for a model's own). */
  readonly stops: readonly string[];
  readonly #template: Template;
  readonly #bos: string;
  readonly #eos: string;

  /**
   * Compile `source` (the model's template) or the fallback when it is undefined. `bosToken`/`eosToken`
   * are the special tokens' texts that templates refer to. Throws BAD_REQUEST for a template that does
   * not parse.
   */
  constructor(source: string | undefined, tokens: { bosToken?: string; eosToken?: string } = {}) {
    this.isFallback = source === undefined || source.trim() === "";
    this.stops = this.isFallback ? FALLBACK_CHAT_STOPS : [];
    try {
      this.#template = new Template(this.isFallback ? FALLBACK_CHAT_TEMPLATE : source!);
    } catch (e) {
      throw new LlmError("BAD_REQUEST", `the chat template does not parse: ${(e as Error).message}`, {
        cause: e,
      });
    }
    this.#bos = tokens.bosToken ?? "";
    this.#eos = tokens.eosToken ?? "";
  }

  /**
   * The prompt text for `messages`, ending where the assistant's reply begins. Throws BAD_REQUEST when
   * the template rejects the conversation (many raise an exception for unsupported role orders).
   */
  render(messages: readonly ChatMessage[]): string {
    try {
      return this.#template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: true,
        bos_token: this.#bos,
        eos_token: this.#eos,
      });
    } catch (e) {
      throw new LlmError(
        "BAD_REQUEST",
        `the model's chat template rejected these messages: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  /** Whether rendered text already starts with the BOS token's text (then no BOS id is prepended). */
  startsWithBos(text: string): boolean {
    return this.#bos !== "" && text.startsWith(this.#bos);
  }
}
