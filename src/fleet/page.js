// clusterrebootd fleet page: polls /api/fleet every second and puts the server-formatted
// values in place. Text only (textContent), never markup; no write actions.
"use strict";
(function () {
  const POLL_MS = 1000;
  const letters = (s) => String(s).replace(/[^A-Za-z]/g, "");
  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }
  function rows(data) {
    const body = document.getElementById("rows");
    if (!body) return;
    const fresh = document.createDocumentFragment();
    for (const r of data.rows) {
      const tr = document.createElement("tr");
      tr.dataset.node = r.node;
      tr.className = "st-" + letters(r.state);
      for (const c of r.cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      fresh.appendChild(tr);
    }
    if (data.rows.length === 0 && !data.error) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 6;
      td.textContent = "no node has published a node_state or cluster_health record yet";
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
  }
  function groups(data) {
    const body = document.getElementById("groups");
    if (!body) return;
    const fresh = document.createDocumentFragment();
    for (const g of data.groups) {
      const tr = document.createElement("tr");
      tr.dataset.group = g.group;
      for (const c of g.cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      fresh.appendChild(tr);
    }
    if (data.groups.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 4;
      td.textContent = "no reboot group pool has an entry";
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
  }
  function facts(data) {
    for (const [label, text] of data.facts) {
      for (const dd of document.querySelectorAll("#facts dd")) {
        if (dd.dataset.fact === label) setText(dd, text);
      }
    }
  }
  function diagram(data) {
    for (const g of document.querySelectorAll("#fsm g.state")) {
      const name = g.id.slice(3);
      const here = data.states[name] || [];
      g.classList.toggle("on", here.length > 0);
      setText(document.getElementById("cnt-" + name), data.state_counts[name] || "");
      setText(document.getElementById("tip-" + name), name + ": " + here.join(", "));
    }
  }
  function error(text) {
    const p = document.getElementById("error");
    if (!p) return;
    p.hidden = !text;
    setText(p, text || "");
  }
  async function poll() {
    try {
      const res = await fetch("/api/fleet", { cache: "no-store" });
      const data = await res.json();
      setText(document.getElementById("updated"), data.generated_at);
      error(data.error);
      if (!data.error) {
        rows(data);
        groups(data);
        facts(data);
        diagram(data);
      }
    } catch (e) {
      error("lost contact with the daemon serving this page (" + e + "); showing the last values");
    }
    setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
})();
