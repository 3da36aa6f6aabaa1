// crm-meetings pages: small progressive enhancements over server-rendered HTML.
"use strict";
(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const statusBox = document.getElementById("status");

  function say(text, isError) {
    statusBox.textContent = text;
    statusBox.className = isError ? "error" : "ok";
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf, "Accept": "application/json" };
    if (method !== "GET") headers["Idempotency-Key"] = newKey();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const type = response.headers.get("content-type") || "";
    const payload = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const error = new Error(payload.message || response.statusText);
      error.payload = payload;
      throw error;
    }
    return payload;
  }

  function fail(error) {
    const hint = error.payload && error.payload.hint ? " " + error.payload.hint : "";
    say(error.message + hint, true);
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }

  // datetime-local value + IANA zone → ISO string with the zone's offset, via the server
  function localValue(form, name) {
    return { local: form.elements[name].value, timezone: form.elements.timezone.value };
  }

  const meetingActions = {
    async copy(id) {
      const text = await api("GET", `/api/v1/meetings/${id}/invitation`);
      await copyText(text);
      say("Invitation copied to the clipboard.");
    },
    edit(id, card, button) {
      const form = card.querySelector('[data-form="edit"]');
      form.hidden = !form.hidden;
      button.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) form.elements.subject.focus();
    },
    async cancel(id, card) {
      const title = card.querySelector("h3").textContent;
      if (!window.confirm(`Cancel "${title}"? Every invitee is told.`)) return;
      await api("POST", `/api/v1/meetings/${id}/cancel`);
      say("Meeting cancelled; invitees will be notified.");
      window.location.reload();
    },
    async delete(id, card) {
      const title = card.querySelector("h3").textContent;
      if (!window.confirm(`Delete "${title}"? This removes it from the CRM.`)) return;
      await api("DELETE", `/api/v1/meetings/${id}`);
      say("Meeting deleted.");
      window.location.reload();
    },
    async sync(id) {
      const result = await api("POST", `/api/v1/meetings/${id}/sync`);
      say(`Synced: ${result.sessions.length} session(s).`);
    },
  };

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const card = button.closest("[data-meeting]");
    try {
      if (card && meetingActions[button.dataset.action]) {
        await meetingActions[button.dataset.action](card.dataset.meeting, card, button);
      } else if (button.dataset.action === "retry-outbox") {
        const result = await api("POST", "/api/v1/admin/outbox/retry", {});
        say(`${result.retried} message(s) queued again.`);
      }
    } catch (error) { fail(error); }
  });

  const forms = {
    async edit(form) {
      const card = form.closest("[data-meeting]");
      const body = {
        expected_version: Number(card.dataset.version),
        subject: form.elements.subject.value,
        start: localValue(form, "start"),
        end: localValue(form, "end"),
        location: form.elements.location.value,
        description: form.elements.description.value,
      };
      await api("PATCH", `/api/v1/meetings/${card.dataset.meeting}`, body);
      say("Saved; the update is on its way to the invitees.");
      window.location.reload();
    },
    async schedule(form) {
      const picked = Array.from(form.querySelectorAll('input[name="invitee"]:checked'))
        .map((box) => ({ email: box.value, name: box.dataset.name || "" }));
      const others = form.elements.others.value.split(",").map((s) => s.trim()).filter(Boolean)
        .map((email) => ({ email, name: "" }));
      const body = {
        subject: form.elements.subject.value,
        start: localValue(form, "start"),
        end: localValue(form, "end"),
        invitees: picked.concat(others),
        related: [{ object_type: form.dataset.recordType, record_id: form.dataset.recordId }],
        location: form.elements.location.value,
        description: form.elements.description.value,
        record_type: form.elements.record_type ? form.elements.record_type.value : null,
      };
      await api("POST", "/api/v1/meetings", body);
      say("Meeting scheduled; invitations are on their way.");
      window.location.reload();
    },
    async "sync-schedule"(form) {
      const body = {
        hour: Number(form.elements.hour.value),
        minute: Number(form.elements.minute.value),
        timezone: form.elements.timezone.value,
      };
      const result = await api("PUT", "/api/v1/admin/sync-schedule", body);
      const next = document.getElementById("next-run");
      next.textContent = result.next_run_time || "not scheduled";
      next.setAttribute("datetime", result.next_run_time || "");
      say("Sync time saved; the worker was rescheduled.");
    },
    async "record-types"(form) {
      const hidden = Array.from(form.querySelectorAll('input[name="visible"]'))
        .filter((box) => !box.checked).map((box) => box.value);
      await api("PUT", "/api/v1/admin/record-types", { hidden });
      say("Record types saved.");
    },
  };

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("[data-form]");
    if (!form || !forms[form.dataset.form]) return;
    event.preventDefault();
    try { await forms[form.dataset.form](form); } catch (error) { fail(error); }
  });
})();
