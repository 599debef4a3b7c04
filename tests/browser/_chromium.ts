/**
 * Headless Chromium driven over the DevTools protocol (a WebSocket, no driver library): launch
 * it with WebGPU on SwiftShader, open a page, evaluate expressions in it, wait for a condition,
 * take a screenshot.
 *
 * The flags: `--enable-unsafe-webgpu` exposes WebGPU on Linux, where Chrome does not ship it by
 * default; `--enable-features=Vulkan,WebGPUService` and `--use-vulkan=swiftshader` give Dawn a
 * Vulkan device with no GPU, SwiftShader's (a software adapter bundled with Chromium). WebGPU
 * exists only in a secure context, so pages come from `http://127.0.0.1`, not `about:blank`.
 * @module
 */
import { join } from "node:path";

/** Chromium's flags for WebGPU on SwiftShader, headless. */
export const WEBGPU_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan,WebGPUService",
  "--use-vulkan=swiftshader",
];

/**
 * The Chromium to run: `WEFT_CHROMIUM`, else the first of chromium, chromium-browser,
 * google-chrome on PATH.
 * @returns its path, or undefined when there is none
 */
export function findChromium(): string | undefined {
  const given = Deno.env.get("WEFT_CHROMIUM");
  if (given) return given;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
      try {
        if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
      } catch { /* not here */ }
    }
  }
  return undefined;
}

type Message = {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
};

/** One page of a running Chromium. */
export class Page {
  #next = 0;
  readonly #pending = new Map<number, (m: Message) => void>();
  /** Console lines and uncaught errors of the page, for a failing test to print. */
  readonly console: string[] = [];

  constructor(readonly socket: WebSocket, readonly sessionId: string) {}

  /** Handles one message from the browser. */
  receive(m: Message): void {
    if (m.id !== undefined) {
      this.#pending.get(m.id)?.(m);
      this.#pending.delete(m.id);
    } else if (m.method === "Runtime.consoleAPICalled") {
      const args = (m.params!.args as { value?: unknown; description?: string }[]) ?? [];
      this.console.push(args.map((a) => a.value ?? a.description).join(" "));
    } else if (m.method === "Runtime.exceptionThrown") {
      const d = m.params!.exceptionDetails as { exception?: { description?: string } };
      this.console.push(`uncaught: ${d.exception?.description}`);
    }
  }

  /**
   * Sends a DevTools command to the page (or to the browser, with `browser`).
   * @param method e.g. `Page.navigate`
   * @param params its parameters
   * @param browser send to the browser rather than the page
   * @returns the command's result
   */
  send(
    method: string,
    params: Record<string, unknown> = {},
    browser = false,
  ): Promise<Record<string, unknown>> {
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(
        id,
        (m) => m.error ? reject(new Error(m.error.message)) : resolve(m.result!),
      );
      this.socket.send(
        JSON.stringify({ id, method, params, ...(browser ? {} : { sessionId: this.sessionId }) }),
      );
    });
  }

  /**
   * Evaluates an expression in the page, awaiting a promise it returns.
   * @param expression JavaScript
   * @returns its value, as JSON carries it
   */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }) as { result: { value: T }; exceptionDetails?: { exception?: { description?: string } } };
    if (r.exceptionDetails) {
      throw new Error(`in the page: ${r.exceptionDetails.exception?.description}`);
    }
    return r.result.value;
  }

  /**
   * Evaluates an expression until it is truthy.
   * @param expression JavaScript
   * @param timeoutMs how long to wait
   * @returns its first truthy value
   */
  async waitFor<T>(expression: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await this.evaluate<T>(expression);
      if (value) return value;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${expression}\npage console:\n` +
            this.console.join("\n"),
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * A PNG of the viewport.
   * @returns its bytes
   */
  async screenshot(): Promise<Uint8Array> {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    return Uint8Array.from(atob(data as string), (c) => c.charCodeAt(0));
  }
}

/** A running headless Chromium with one page. */
export interface Chromium {
  /** The page. */
  page: Page;
  /** The browser's stderr so far, for a failing test to print. */
  log(): string;
  /** Closes the browser and waits for its process. */
  close(): Promise<void>;
}

/**
 * Launches headless Chromium with WebGPU on SwiftShader and opens `url` at a fixed viewport.
 * @param path the Chromium binary
 * @param url the page
 * @param viewport its size in CSS pixels
 * @returns the browser and its page, loaded
 */
export async function launchChromium(
  path: string,
  url: string,
  viewport = { width: 1280, height: 1000 },
): Promise<Chromium> {
  const profile = await Deno.makeTempDir({ prefix: "weft_chromium_" });
  const child = new Deno.Command(path, {
    args: [
      ...WEBGPU_FLAGS,
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "--no-first-run",
      "--hide-scrollbars",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const endpoint = await new Promise<string>((resolve, reject) => {
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return reject(new Error(`Chromium exited before listening:\n${stderr}`));
        stderr += value;
        const m = /DevTools listening on (ws:\S+)/.exec(stderr);
        if (m) resolve(m[1]);
      }
    })();
  });
  const socket = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot connect to ${endpoint}`));
  });
  // Browser-level commands go through a Page without a session; the page's have its session.
  const browser = new Page(socket, "");
  const pages = new Map<string, Page>();
  socket.onmessage = (e) => {
    const m = JSON.parse(e.data) as Message;
    (pages.get(m.sessionId ?? "") ?? browser).receive(m);
  };
  const { targetId } = await browser.send("Target.createTarget", { url: "about:blank" }, true);
  const { sessionId } = await browser.send(
    "Target.attachToTarget",
    { targetId, flatten: true },
    true,
  );
  const page = new Page(socket, sessionId as string);
  pages.set(page.sessionId, page);
  await page.send("Runtime.enable");
  await page.send("Page.enable");
  await page.send("Emulation.setDeviceMetricsOverride", {
    ...viewport,
    deviceScaleFactor: 1,
    mobile: false,
  });
  await page.send("Page.navigate", { url });
  await page.waitFor("document.readyState === 'complete'", 30_000);
  // Read the rest of stderr so the pipe never fills.
  (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
      if (done) return;
      stderr += value;
    }
  })();
  return {
    page,
    log: () => stderr,
    async close() {
      await browser.send("Browser.close", {}, true).catch(() => {});
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await child.status;
      clearTimeout(timer);
      socket.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}
