/**
 * A test module for `suite_exit_test.ts` (not collected by `deno test tests/`: no `_test` in its
 * name). Its test passes, or fails when WEFT_FIXTURE_FAIL is set, and either way the process
 * then aborts inside `exit()`, after Deno's summary, as the GL driver's exit race does.
 * glibc only: it registers libc's `abort` as an exit handler.
 */

const libc = Deno.dlopen("libc.so.6", {
  dlsym: { parameters: ["pointer", "buffer"], result: "pointer" },
  __cxa_atexit: { parameters: ["pointer", "pointer", "pointer"], result: "i32" },
});

Deno.test("a test that ends before the process aborts in exit()", () => {
  const abort = libc.symbols.dlsym(null, new TextEncoder().encode("abort\0"));
  if (abort === null || libc.symbols.__cxa_atexit(abort, null, null) !== 0) {
    throw new Error("could not register abort as an exit handler");
  }
  if (Deno.env.get("WEFT_FIXTURE_FAIL")) throw new Error("failing as asked");
});
