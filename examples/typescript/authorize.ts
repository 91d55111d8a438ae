// authorize -> call the model -> commit, against `allotment serve`, with fetch.
//
//   ALLOTMENT_URL=http://127.0.0.1:8080 ALLOTMENT_KEY=ak_... node authorize.js
//
// A refused call answers 402 with a payload the end user can be shown.

type Usage = { input_tokens?: number; output_tokens?: number };

const base = process.env.ALLOTMENT_URL ?? "http://127.0.0.1:8080";
const key = process.env.ALLOTMENT_KEY ?? "";

async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

async function callModel(prompt: string): Promise<Usage> {
  // Your provider call goes here; this example pretends it used this much.
  return { input_tokens: prompt.length, output_tokens: 120 };
}

async function main(): Promise<void> {
  const requestId = crypto.randomUUID();
  const subject = { tenant: "acme", user: "u1", feature: "summarize" };
  const decision = await post("/v1/authorize", {
    request_id: requestId,
    subject,
    provider: "openai",
    model: "gpt-4o-mini",
    estimate: { output_tokens: 512 },
  });
  if (decision.status === 402) {
    const error = decision.json.error;
    console.log(`refused: ${error.reason} (${error.message}) resets at ${error.resets_at}`);
    return;
  }
  if (decision.status !== 200) throw new Error(`authorize: HTTP ${decision.status}`);
  try {
    const usage = await callModel("Summarise the meeting notes.");
    const committed = await post("/v1/commit", { request_id: requestId, usage });
    console.log(`allowed and committed: cost ${committed.json.event.usage.cost_micros} micro-USD`);
  } catch (failure) {
    await post("/v1/release", { request_id: requestId, reason: "provider_error" });
    throw failure;
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
