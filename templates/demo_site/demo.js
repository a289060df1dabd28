"use strict";
// Shared by every demo page: text-only DOM helpers, JSON POSTs with Django's CSRF token,
// a WebSocket that reconnects, and the object panel's state, polled without waking it.
const Demo = (() => {
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);  // never HTML
    if (className) node.className = className;
    return node;
  }

  function data(id) {
    return JSON.parse(document.getElementById(id).textContent);
  }

  function notice(text, kind) {
    const node = document.getElementById("notice");
    node.textContent = text;
    node.className = kind || "";
    node.hidden = !text;
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function post(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken()},
        body: JSON.stringify(body || {}),
      });
    } catch (error) {
      return {ok: false, status: 0, data: {error: "The server could not be reached."}};
    }
    let payload;
    try {
      payload = await response.json();
    } catch (error) {
      payload = {error: `The server answered ${response.status}.`};
    }
    return {ok: response.ok, status: response.status, data: payload};
  }

  // path: a function returning the socket's path (it may change, as the chat's name does).
  function socket(path, onMessage, onOpen) {
    const status = document.getElementById("connection");
    let ws = null;
    let delay = 500;
    let reconnecting = false;  // closed by reconnect(): connect again at once
    function show(text, kind) {
      if (status) {
        status.textContent = text;
        status.className = `connection ${kind}`;
      }
    }
    function connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      ws = new WebSocket(`${scheme}://${location.host}${path()}`);
      ws.onopen = () => {
        delay = 500;
        show("connected", "ok");
        if (onOpen) onOpen();
      };
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === "error") notice(message.message, "error");
        else onMessage(message);
      };
      ws.onclose = (event) => {
        if (reconnecting) {
          reconnecting = false;
          connect();
          return;
        }
        show(`disconnected (${event.code}); reconnecting…`, "bad");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 5000);
      };
    }
    connect();
    return {
      send(message) {
        if (!ws || ws.readyState !== WebSocket.OPEN) {
          notice("Not connected yet; try again in a moment.", "error");
          return false;
        }
        ws.send(JSON.stringify(message));
        return true;
      },
      reconnect() {
        reconnecting = true;
        show("reconnecting…", "");
        ws.close(1000);
      },
    };
  }

  function watchObject() {
    const source = document.getElementById("object-state-url");
    if (!source) return;
    const url = JSON.parse(source.textContent);
    const state = document.getElementById("object-state");
    const where = document.getElementById("object-where");
    async function refresh() {
      if (document.visibilityState === "visible") {
        try {
          const response = await fetch(url, {credentials: "same-origin"});
          if (response.ok) {
            const info = await response.json();
            state.textContent = info.state;
            state.className = `state ${info.state}`;
            where.textContent = info.where;
          }
        } catch (error) {
          // The server is restarting; the next round tries again.
        }
      }
      setTimeout(refresh, 2000);
    }
    setTimeout(refresh, 1000);
  }

  watchObject();
  return {el, data, notice, post, socket};
})();
