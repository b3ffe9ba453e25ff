// An agent's call to the OpenAI chat completions API with the official `openai` SDK, the way a
// user runs it under sidekey:
//
//   sidekey exec --ref-env OPENAI_API_KEY=openai -- node chat.mjs
//
// The SDK reads its key from OPENAI_API_KEY, which holds the reference {{secrets.openai}};
// sidekey substitutes the real key on the way out. Node 20's fetch ignores HTTP(S)_PROXY
// (NODE_USE_ENV_PROXY=1, which sidekey exec also sets, is only read by newer Node releases), so
// the proxy is given to the SDK's fetch as an undici ProxyAgent. The sidekey CA needs no option here: `sidekey exec` sets
// NODE_EXTRA_CA_CERTS, which Node adds to its roots for every TLS connection, the ones undici
// opens inside the CONNECT tunnel included.
//
// Environment: OPENAI_API_KEY, HTTPS_PROXY (both set by sidekey exec), OPENAI_BASE_URL
// (default https://api.openai.test/v1), CHAT_ENV_DUMP (optional: a file to write process.env to),
// CHAT_STREAM=1 (stream the completion).
import { writeFileSync } from "node:fs";
import OpenAI from "openai";
import { ProxyAgent } from "undici";

const proxy = process.env.HTTPS_PROXY || process.env.https_proxy;
const options = {
  baseURL: process.env.OPENAI_BASE_URL || "https://api.openai.test/v1",
  apiKey: process.env.OPENAI_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
};
if (proxy) options.fetchOptions = { dispatcher: new ProxyAgent(proxy) };

if (process.env.CHAT_ENV_DUMP) writeFileSync(process.env.CHAT_ENV_DUMP, JSON.stringify(process.env));

const client = new OpenAI(options);
const request = { model: "gpt-test", messages: [{ role: "user", content: "Say hello." }] };
try {
  if (process.env.CHAT_STREAM === "1") {
    // Server-sent events, printed as they arrive: one line per delta, then the whole text.
    const stream = await client.chat.completions.create({ ...request, stream: true });
    let content = "";
    let id = null;
    for await (const chunk of stream) {
      id = chunk.id;
      const delta = chunk.choices[0]?.delta?.content ?? "";
      content += delta;
      console.log(JSON.stringify({ delta }));
    }
    console.log(JSON.stringify({ ok: true, id, content }));
  } else {
    const completion = await client.chat.completions.create(request);
    console.log(JSON.stringify({ ok: true, id: completion.id, content: completion.choices[0].message.content }));
  }
} catch (err) {
  const causes = [];
  for (let e = err.cause; e && causes.length < 5; e = e.cause) causes.push(`${e.code ?? ""} ${e.message ?? e}`.trim());
  console.log(JSON.stringify({ ok: false, status: err.status ?? null, error: String(err), causes }));
  process.exitCode = 1;
}
