/*! trackflow browser tracker | Apache-2.0 | served by the trackflow gateway at /tracker.js
 *
 * Load it with the snippet (README: "Browser tracker"), then:
 *   trackflow("init", {gateway: "https://events.example.com", source: "my-site"});
 *   trackflow("track", "add-to-cart", {sku: "A-1"});
 *   trackflow("identify", "user-42", {email: "ada@example.com"});
 *   trackflow("page");
 *
 * Events are queued, batched and sent as Tracardi-format payloads to POST {gateway}/track,
 * and nowhere else. The profile id the gateway answers with is kept in localStorage; the
 * session id in a first-party cookie that expires after 30 idle minutes.
 */
(function (window, document) {
  "use strict";

  var VERSION = "1.0.0";
  var PROFILE_KEY = "trackflow.profile";
  var USER_KEY = "trackflow.user";
  var SESSION_COOKIE = "trackflow_session";
  var UTM = ["source", "medium", "campaign", "term", "content"];
  var RETRIABLE = { 0: 1, 408: 1, 429: 1, 502: 1, 503: 1, 504: 1 };
  var MAX_QUEUE = 1000; // events kept while the gateway cannot be reached; the oldest go first

  var previous = window.trackflow;
  if (previous && previous.version) return; // loaded twice

  var config = {
    gateway: scriptOrigin(),
    source: null,
    pageView: true, // a page-view event when "init" runs
    flushInterval: 1000, // ms between a first queued event and its send
    batchSize: 10, // events per request; a full batch is sent at once
    maxRetries: 6, // then the batch is dropped
    retryDelay: 1000, // first backoff, doubled per attempt (with jitter)
    maxRetryDelay: 30000,
    timeout: 10000, // ms before a send that has not been answered counts as failed
    sessionMinutes: 30,
    cookieDomain: null
  };
  var queue = []; // events not yet sent (failed batches go back to its front)
  var sending = false;
  var timer = null;
  var attempt = 0; // failed sends in a row
  var retryAt = 0; // no send before this time (ms) while backing off
  var memory = {}; // stands in for localStorage where it is unavailable

  // ---- identifiers and storage -------------------------------------------------------

  function uuid() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = "";
    for (var j = 0; j < 16; j++) {
      h += (b[j] + 256).toString(16).slice(1);
      if (j === 3 || j === 5 || j === 7 || j === 9) h += "-";
    }
    return h;
  }

  function load(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return memory[key] || null;
    }
  }

  function save(key, value) {
    try {
      if (value == null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      memory[key] = value;
    }
  }

  function sessionId() {
    var match = document.cookie.match(new RegExp("(?:^|; )" + SESSION_COOKIE + "=([^;]*)"));
    var id = match ? decodeURIComponent(match[1]) : uuid();
    setSession(id); // sliding expiry: every event renews it
    return id;
  }

  function setSession(id) {
    var cookie = SESSION_COOKIE + "=" + encodeURIComponent(id) + "; Path=/; SameSite=Lax";
    cookie += "; Max-Age=" + (id ? Math.round(config.sessionMinutes * 60) : 0);
    if (config.cookieDomain) cookie += "; Domain=" + config.cookieDomain;
    if (window.location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  }

  // ---- context -----------------------------------------------------------------------

  function pageContext() {
    var loc = window.location;
    var page = { url: loc.href, path: loc.pathname, title: document.title };
    if (loc.hash) page.hash = loc.hash;
    if (document.referrer) page.referrer = document.referrer;
    return page;
  }

  function utm() {
    var found = null;
    var query = window.location.search.substring(1).split("&");
    for (var i = 0; i < query.length; i++) {
      var pair = query[i].split("=");
      var name = decodeParam(pair[0]);
      if (name.indexOf("utm_") !== 0 || UTM.indexOf(name.substring(4)) < 0) continue;
      (found = found || {})[name.substring(4)] = decodeParam(pair.slice(1).join("="));
    }
    return found;
  }

  function decodeParam(text) {
    try {
      return decodeURIComponent(text.replace(/\+/g, " "));
    } catch (e) {
      return text;
    }
  }

  function context() {
    var s = window.screen || {};
    var ctx = {
      page: pageContext(),
      screen: {
        width: s.width,
        height: s.height,
        density: window.devicePixelRatio || 1,
        viewport: { width: window.innerWidth, height: window.innerHeight }
      },
      language: navigator.language,
      time: { local: new Date().toISOString() },
      library: { name: "trackflow.js", version: VERSION }
    };
    try {
      ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
      /* no Intl: the gateway's enrichment goes without */
    }
    var campaign = utm();
    if (campaign) ctx.utm = campaign;
    var user = load(USER_KEY);
    if (user) ctx.user_id = user;
    return ctx;
  }

  // ---- the public commands -----------------------------------------------------------

  function init(options) {
    for (var key in options || {}) {
      if (Object.prototype.hasOwnProperty.call(options, key)) config[key] = options[key];
    }
    config.gateway = String(config.gateway || "").replace(/\/+$/, "");
    if (!/^https?:\/\//.test(config.gateway)) warn("init: gateway must be an http(s) URL");
    if (!config.source) warn("init: source is required; events stay queued until it is set");
    if (config.pageView) page();
    schedule();
  }

  function track(type, properties, options) {
    if (typeof type !== "string" || !type) return warn("track: the event type must be a string");
    var ctx = context();
    var extra = (options && options.context) || {};
    for (var key in extra) {
      if (Object.prototype.hasOwnProperty.call(extra, key)) ctx[key] = extra[key];
    }
    var event = {
      id: uuid(),
      type: type,
      properties: isObject(properties) ? properties : {},
      context: ctx,
      options: {},
      tags: (options && options.tags) || [],
      session: sessionId()
    };
    try {
      JSON.stringify(event);
    } catch (e) {
      return warn("track: " + type + " cannot be sent as JSON: " + e);
    }
    queue.push(event);
    if (queue.length > MAX_QUEUE) warn("queue full: dropped event " + queue.shift().type);
    if (queue.length >= config.batchSize) flush();
    else schedule();
  }

  function identify(userId, traits) {
    if (userId != null && userId !== "") save(USER_KEY, String(userId));
    var ctx = { traits: isObject(traits) ? traits : {} };
    if (userId != null && userId !== "") ctx.user_id = String(userId);
    track("identify", {}, { context: ctx });
  }

  function page(properties) {
    track("page-view", properties);
  }

  function reset() {
    save(PROFILE_KEY, null);
    save(USER_KEY, null);
    setSession("");
  }

  // ---- sending -----------------------------------------------------------------------

  function schedule(delay) {
    if (timer || !queue.length) return;
    timer = setTimeout(function () {
      timer = null;
      flush();
    }, delay == null ? config.flushInterval : delay);
  }

  function nextBatch() {
    // one payload has one session: a batch stops where the session id changes
    var n = 1;
    while (n < queue.length && n < config.batchSize && queue[n].session === queue[0].session) n++;
    return queue.splice(0, n);
  }

  function payload(batch) {
    var body = { source: { id: config.source }, session: { id: batch[0].session }, events: [] };
    var profile = load(PROFILE_KEY);
    if (profile) body.profile = { id: profile };
    for (var i = 0; i < batch.length; i++) {
      var e = batch[i];
      body.events.push({
        id: e.id,
        type: e.type,
        properties: e.properties,
        context: e.context,
        options: e.options,
        tags: e.tags
      });
    }
    return JSON.stringify(body);
  }

  function flush() {
    if (sending || !queue.length || !config.source || !window.fetch) return;
    var now = new Date().getTime();
    if (now < retryAt) return schedule(retryAt - now);
    clearTimeout(timer);
    timer = null;
    var batch = nextBatch();
    var body = payload(batch);
    sending = true;
    var abort = window.AbortController ? new AbortController() : null;
    var timeout = setTimeout(function () {
      if (abort) abort.abort();
    }, config.timeout);
    // text/plain keeps the request "simple": the browser sends it without a CORS preflight
    window
      .fetch(config.gateway + "/track", {
        method: "POST",
        headers: { "Content-Type": "text/plain;charset=UTF-8" },
        body: body,
        credentials: "omit",
        keepalive: body.length < 20000, // completes even if the page goes away (64 KB cap)
        signal: abort ? abort.signal : undefined
      })
      .then(function (response) {
        clearTimeout(timeout);
        if (response.ok) return response.json().then(accepted, accepted);
        failed(batch, response.status, response.headers.get("Retry-After"));
      }, function () {
        clearTimeout(timeout);
        failed(batch, 0, null);
      });
  }

  function accepted(answer) {
    if (answer && answer.profile && answer.profile.id) save(PROFILE_KEY, answer.profile.id);
    sending = false;
    attempt = 0;
    if (queue.length >= config.batchSize) flush();
    else schedule();
  }

  function failed(batch, status, retryAfter) {
    sending = false;
    if (!RETRIABLE[status]) {
      attempt = 0;
      warn("the gateway refused " + batch.length + " event(s) with status " + status);
      return schedule();
    }
    if (++attempt > config.maxRetries) {
      warn("dropped " + batch.length + " event(s) after " + config.maxRetries + " retries");
      attempt = 0;
      return schedule();
    }
    queue = batch.concat(queue); // event ids are kept, so a repeat is stored once
    var backoff = Math.min(config.maxRetryDelay, config.retryDelay * Math.pow(2, attempt - 1));
    var wait = backoff / 2 + Math.random() * (backoff / 2);
    var seconds = parseFloat(retryAfter);
    if (seconds > 0) wait = Math.max(wait, Math.min(seconds * 1000, config.maxRetryDelay));
    retryAt = new Date().getTime() + wait;
    schedule(wait);
  }

  // The page may be going away: hand what is queued to the browser, which sends it even
  // after the page is gone. Events that sendBeacon does not take stay queued.
  function flushOnHide() {
    if (!config.source || !navigator.sendBeacon) return;
    while (queue.length) {
      var batch = nextBatch();
      var blob = new Blob([payload(batch)], { type: "text/plain;charset=UTF-8" });
      if (!navigator.sendBeacon(config.gateway + "/track", blob)) {
        queue = batch.concat(queue);
        return;
      }
    }
  }

  // ---- helpers and start -------------------------------------------------------------

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function warn(message) {
    if (window.console) window.console.warn("trackflow: " + message);
  }

  function scriptOrigin() {
    var script = document.currentScript;
    var match = script && script.src && script.src.match(/^https?:\/\/[^/]+/);
    return match ? match[0] : "";
  }

  var commands = { init: init, track: track, identify: identify, page: page, reset: reset };

  function trackflow(name) {
    var args = Array.prototype.slice.call(arguments, 1);
    if (typeof name === "function") return name(trackflow);
    if (!Object.prototype.hasOwnProperty.call(commands, name)) {
      return warn("unknown command " + name);
    }
    try {
      commands[name].apply(null, args);
    } catch (e) {
      warn(name + " failed: " + e);
    }
  }

  trackflow.version = VERSION;
  trackflow.track = track;
  trackflow.identify = identify;
  trackflow.page = page;
  trackflow.reset = reset;
  trackflow.profileId = function () {
    return load(PROFILE_KEY);
  };
  trackflow.sessionId = function () {
    return sessionId();
  };
  window.trackflow = trackflow;

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flushOnHide();
  });
  window.addEventListener("pagehide", flushOnHide);

  var waiting = (previous && previous.q) || [];
  for (var i = 0; i < waiting.length; i++) trackflow.apply(null, waiting[i]);
})(window, document);
