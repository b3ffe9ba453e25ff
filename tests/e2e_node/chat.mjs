// An agent's call to the OpenAI chat completions API with the official `openai` SDK, the way a
// user runs it under sidekey:
//
//   sidekey exec --ref-env OPENAI_API_KEY=openai -- node chat.mjs
//
// The SDK reads its key from OPENAI_API_KEY, which holds the reference {{secrets.openai}};
// sidekey substitutes the real key on the way out. Node 20's fetch ignores HTTP(S)_PROXY
// (NODE_USE_ENV_PROXY only exists from Node 22.21 / 24), so the proxy is given to the SDK's
// fetch as an undici ProxyAgent. The sidekey CA needs no option here: `sidekey exec` sets
// NODE_EXTRA_CA_CERTS, which Node adds to its roots for every TLS connection, the ones undici
// opens inside the CONNECT tunnel included.
//
// Environment: OPENAI_API_KEY, HTTPS_PROXY (both set by sidekey exec), OPENAI_BASE_URL
// (default https://api.openai.test/v1), CHAT_ENV_DUMP (optional: a file to write process.env to).
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
try {
  const completion = await client.chat.completions.create({
    model: "gpt-test",
    messages: [{ role: "user", content: "Say hello." }],
  });
  console.log(JSON.stringify({ ok: true, id: completion.id, content: completion.choices[0].message.content }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, status: err.status ?? null, error: String(err), cause: String(err.cause ?? "") }));
  process.exitCode = 1;
}
