/**
 * The dead-letter stream (`RP_DLQ`): what the engine could not use and why,
 * and — for admins — re-submitting one message, as it was or edited, to the
 * subject it first came on. The letter stays where it is (the engine deletes
 * nothing); the re-submission is audited with the letter it came from.
 */
import { randomUUID } from "node:crypto"
import { Schema } from "effect"
import type { Context, Hono } from "hono"
import { html } from "hono/html"
import { isUuid } from "../domain/Ids.ts"
import { writeAudit } from "../store/OperatorStore.ts"
import { DeadLetter } from "../streams/Messages.ts"
import { type ConsoleEnv, refusal, requireRole } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { BASE, csrfField, type Flash, page, pretty, roleAtLeast, when } from "./Html.ts"
import { checkReason } from "./SubscriptionPage.ts"

const PAGE_SIZE = 50
const MAX_PAYLOAD = 1024 * 1024
const decodeLetter = Schema.decodeUnknownOption(Schema.fromJsonString(DeadLetter))
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** A letter as stored, or why it cannot be read. */
type Stored =
  | { readonly _tag: "Letter"; readonly seq: number; readonly letter: DeadLetter; readonly storedAt: Date }
  | { readonly _tag: "Unreadable"; readonly seq: number; readonly subject: string }

/** The original bytes as text when they are UTF-8, else undefined (they can then only be sent unchanged). */
const originalText = (letter: DeadLetter): string | undefined => {
  try {
    return strictUtf8.decode(Buffer.from(letter.data, "base64"))
  } catch {
    return undefined
  }
}

export const registerDeadLetterPages = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  const stream = services.topology.streams.deadLetters

  const read = async (seq: number): Promise<Stored | undefined> => {
    const message = await services.jsm.streams.getMessage(stream, { seq }).catch(() => null)
    if (message === null) return undefined
    const letter = decodeLetter(message.string())
    return letter._tag === "Some"
      ? { _tag: "Letter", seq, letter: letter.value, storedAt: message.time }
      : { _tag: "Unreadable", seq, subject: message.subject }
  }

  app.get("/dead-letters", async (c) => {
    const session = c.get("session")
    const info = await services.jsm.streams.info(stream).catch(() => undefined)
    const before = Number(c.req.query("before"))
    const last = Math.min(
      info?.state.last_seq ?? 0,
      Number.isSafeInteger(before) && before > 0 ? before - 1 : Number.MAX_SAFE_INTEGER,
    )
    const first = info?.state.first_seq ?? 1
    const letters: Array<Stored> = []
    for (
      let seq = last;
      seq >= first && letters.length < PAGE_SIZE && info !== undefined && info.state.messages > 0;
      seq--
    ) {
      const stored = await read(seq)
      if (stored !== undefined) letters.push(stored)
    }
    const oldest = letters[letters.length - 1]?.seq
    const body = html`
      <h1>Dead letters</h1>
      <p class="muted">
        Stream <code>${stream}</code>: ${info?.state.messages ?? 0} letter(s). Each is a message a consumer could not decode or
        process after its retries; the consumer moved on. Newest first.
      </p>
      <table data-testid="dead-letters">
        <thead><tr><th>#</th><th>Kept at</th><th>From stream / consumer</th><th>Original subject</th><th>Reason</th><th class="num">Deliveries</th></tr></thead>
        <tbody>
          ${letters.map((stored) =>
            stored._tag === "Unreadable"
              ? html`<tr><td>${stored.seq}</td><td colspan="5" class="muted">not a letter this engine wrote (subject ${stored.subject})</td></tr>`
              : html`<tr>
                  <td><a href="${BASE}/dead-letters/${stored.seq}">${stored.seq}</a></td>
                  <td>${when(stored.letter.receivedAt)}</td>
                  <td class="mono small">${stored.letter.stream} / ${stored.letter.consumer}</td>
                  <td class="mono small">${stored.letter.subject}</td>
                  <td>${stored.letter.reason}</td>
                  <td class="num">${stored.letter.deliveries}</td>
                </tr>`,
          )}
        </tbody>
      </table>
      ${letters.length === 0 ? html`<p class="card muted">No dead letter: every message was used.</p>` : ""}
      ${oldest !== undefined && oldest > first ? html`<p><a href="${BASE}/dead-letters?before=${oldest}">Older</a></p>` : ""}`
    return c.html(page({ title: "Dead letters", session, current: "/dead-letters", body }))
  })

  const letterPage = async (
    c: Context<ConsoleEnv>,
    seq: number,
    flash?: Flash,
    status: 200 | 422 | 409 = 200,
  ) => {
    const session = c.get("session")
    const stored = Number.isSafeInteger(seq) && seq > 0 ? await read(seq) : undefined
    if (stored === undefined || stored._tag === "Unreadable")
      return refusal(c, 404, `There is no dead letter #${seq} in ${stream}.`)
    const { letter } = stored
    const text = originalText(letter)
    const admin = roleAtLeast(session.role, "admin")
    const body = html`
      <h1>Dead letter #${seq}</h1>
      <div class="card">
        <dl class="terms">
          <dt>Reason</dt><dd data-testid="reason"><b>${letter.reason}</b></dd>
          ${letter.details.length === 0 ? "" : html`<dt>Problems</dt><dd>${letter.details.map((d) => html`<div><code>${d.path}</code> ${d.message}</div>`)}</dd>`}
          <dt>Original subject</dt><dd class="mono">${letter.subject}</dd>
          <dt>From</dt><dd>stream <code>${letter.stream}</code> #${letter.streamSequence}, consumer <code>${letter.consumer}</code>, after ${letter.deliveries} deliveries</dd>
          <dt>Kept at</dt><dd>${when(letter.receivedAt)}</dd>
          ${Object.keys(letter.headers).length === 0 ? "" : html`<dt>Headers</dt><dd><pre>${pretty(letter.headers)}</pre></dd>`}
        </dl>
      </div>
      <h2>Original message</h2>
      ${
        letter.dataOmitted !== undefined
          ? html`<p class="card">Too large to copy into the letter (${letter.dataOmitted.bytes} bytes, SHA-256 <code>${letter.dataOmitted.sha256}</code>): it is still in <code>${letter.stream}</code> at sequence ${letter.streamSequence}.</p>`
          : text === undefined
            ? html`<p class="muted">Not UTF-8 text; base64:</p><pre>${letter.data}</pre>`
            : html`<pre data-testid="original">${text}</pre>`
      }
      ${
        !admin || letter.dataOmitted !== undefined
          ? ""
          : html`<h2>Re-submit to ${letter.subject}</h2>
            <form class="card" method="post" action="${BASE}/dead-letters/${seq}/resubmit" data-testid="resubmit">
              ${csrfField(session)}
              <input type="hidden" name="requestId" value="${randomUUID()}" />
              ${
                text === undefined
                  ? html`<p class="muted">The original bytes are sent unchanged (they are not text, so they cannot be edited here).</p>`
                  : html`<label for="payload">Message (edit it if it needs mending)</label><textarea id="payload" name="payload" class="mono">${text}</textarea>`
              }
              <label for="reason">Reason (required, kept in the audit log)</label>
              <input id="reason" name="reason" type="text" required minlength="5" maxlength="500" />
              <p><button type="submit">Re-submit</button></p>
            </form>`
      }`
    return c.html(
      page({ title: `Dead letter #${seq}`, session, current: "/dead-letters", body, flash }),
      status,
    )
  }

  app.get("/dead-letters/:seq", (c) => {
    const sent = Number(c.req.query("sent"))
    const flash: Flash | undefined =
      Number.isSafeInteger(sent) && sent > 0
        ? {
            kind: "ok",
            text:
              c.req.query("again") === "1"
                ? `Already re-submitted: this form was sent before (stored at sequence ${sent}); nothing was sent again.`
                : `Re-submitted: stored at sequence ${sent} of its stream.`,
          }
        : undefined
    return letterPage(c, Number(c.req.param("seq")), flash)
  })

  app.post("/dead-letters/:seq/resubmit", requireRole("admin"), async (c) => {
    const seq = Number(c.req.param("seq"))
    const stored = Number.isSafeInteger(seq) && seq > 0 ? await read(seq) : undefined
    if (stored === undefined || stored._tag === "Unreadable")
      return refusal(c, 404, `There is no dead letter #${seq} in ${stream}.`)
    const { letter } = stored
    const form = await c.req.parseBody()
    const reason = typeof form.reason === "string" ? form.reason.trim() : ""
    const requestId =
      typeof form.requestId === "string" && isUuid(form.requestId) ? form.requestId : undefined
    const refuse = (text: string) =>
      letterPage(c, seq, { kind: "error", text: `Not re-submitted: ${text}. Nothing was sent.` }, 422)
    const problem = checkReason(reason)
    if (problem !== undefined) return refuse(problem)
    if (requestId === undefined) return refuse("the form has no request id: reload the page")
    if (letter.dataOmitted !== undefined)
      return refuse("the original was too large to copy into the letter; it is still in its stream")
    const original = Buffer.from(letter.data, "base64")
    const text = originalText(letter)
    const edited =
      typeof form.payload === "string" &&
      text !== undefined &&
      form.payload.replace(/\r\n/g, "\n") !== text.replace(/\r\n/g, "\n")
    const payload = edited ? Buffer.from(String(form.payload)) : original
    if (payload.length > MAX_PAYLOAD) return refuse(`the message is larger than ${MAX_PAYLOAD} bytes`)
    // Only to where it came from: the subject must still belong to the stream the letter names.
    const owner = await services.jsm.streams.find(letter.subject).catch(() => undefined)
    if (owner !== letter.stream)
      return refuse(`subject ${letter.subject} no longer belongs to stream ${letter.stream}`)
    // The message id is the form's: a double click is dropped by the stream's duplicate window.
    const ack = await services.js.publish(letter.subject, payload, {
      msgID: `resubmit:${stream}:${seq}:${requestId}`,
    })
    if (!ack.duplicate) {
      await writeAudit(services.db, {
        operator: c.get("session").login,
        action: "dead_letter.resubmit",
        target: `${stream}#${seq}`,
        clientId: null,
        reason,
        details: {
          subject: letter.subject,
          edited,
          stream: ack.stream,
          seq: ack.seq,
          originalSequence: letter.streamSequence,
        },
      })
    }
    return c.redirect(`${BASE}/dead-letters/${seq}?sent=${ack.seq}${ack.duplicate ? "&again=1" : ""}`, 303)
  })
}
