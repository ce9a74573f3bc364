/* fiftyone-csl: CslPlayerBridge, hand-written (no build step), plain ES2019.
 *
 * fiftyone-csl's player bridge (fiftyone.yml js_bundle). Rendered by the Python panel csl_timeline through
 *   types.View(component="CslPlayerBridge", composite_view=True, on_frame=..., shortcuts={...})
 * it (a) seeks the modal's video player when the panel's state "player.seek" gets a new nonce,
 * (b) reports the player's frame back to the panel (on pause / after a seek settles, and at most
 * every report_ms while playing), (c) binds keyboard shortcuts to panel methods while the modal
 * shows the panel and the focus is not in a text field.
 *
 * Uses only the App's globals: window.React, window.recoil, window.__fos__ (@fiftyone/state),
 * window.__fop__ (@fiftyone/plugins), window.__foo__ (@fiftyone/operators), window.__fosp__ (@fiftyone/spaces).
 */
(function () {
  "use strict";
  var React = window.React;
  var recoil = window.recoil;
  var fos = window.__fos__;
  var fop = window.__fop__;
  var foo = window.__foo__;
  if (!React || !recoil || !fos || !fop || !foo || !fos.modalLooker || !foo.usePanelEvent) {
    console.error("fiftyone-csl: the App's globals are missing; CslPlayerBridge not registered");
    return;
  }
  var h = React.createElement;
  // the page's state (the applied seek, a seek being held) across remounts of the component; the
  // browser tests read the looker and trigger panel methods through it
  var bridge = (window.__csl_bridge__ = window.__csl_bridge__ || { appliedNonce: null, looker: null });
  var fosp = window.__fosp__; // @fiftyone/spaces: the id of the panel the component renders in
  var usePanelId = (fosp && fosp.usePanelId) || function () { return null; };
  var useModalMode = fos.useModalMode || function () { return null; };

  function typingIn(el) {
    if (!el || el === document.body) return false;
    var tag = (el.tagName || "").toUpperCase();
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable) return true;
    var role = el.getAttribute && el.getAttribute("role");
    return role === "textbox" || role === "combobox" || role === "listbox" || role === "option" ||
      role === "menuitem" || role === "searchbox";
  }

  function lookerSampleId(looker) {
    var c = looker && looker.state && looker.state.config;
    if (c && c.sampleId) return c.sampleId;
    var s = looker && looker.sample;
    return s ? (s._id || s.id || null) : null;
  }

  // A new looker's playback transport (FiftyOne 1.22's modal timeline) seeks it to the transport's own
  // time (frame 1) after it loads and again when its first buffering ends, i.e. after our seek. The
  // hold sends it back to the requested frame until the frame has stayed there for hold_settle_ms (at
  // most hold_ms), never against the user (a pointer or key down) or while playing. It belongs to the
  // page, not to the component: the panel re-renders (and remounts the component) meanwhile.
  function hold(looker, target, view) {
    if (bridge.release) bridge.release();
    var settle = view.hold_settle_ms || 2500, quiet = null, cap = null, off = null;
    function stop() {
      if (bridge.release !== stop) return;
      bridge.release = null;
      if (off) off();
      clearTimeout(quiet);
      clearTimeout(cap);
      document.removeEventListener("pointerdown", stop, true);
      document.removeEventListener("keydown", stop, true);
    }
    function arm() { clearTimeout(quiet); quiet = setTimeout(stop, settle); }
    bridge.release = stop;
    off = looker.subscribeToState("frameNumber", function (f) {
      if (looker.state.playing) { setTimeout(stop, 0); return; }
      if (f !== target) {
        setTimeout(function () { if (bridge.release === stop) looker.seekToFrame(target); }, 0);
      }
      arm();
    });
    document.addEventListener("pointerdown", stop, true);
    document.addEventListener("keydown", stop, true);
    arm();
    cap = setTimeout(stop, view.hold_ms || 10000);
  }

  function CslPlayerBridge(props) {
    var view = (props.schema && props.schema.view) || {};
    var data = props.data || {};
    var seek = data.seek || null;
    var looker = recoil.useRecoilValue(fos.modalLooker);
    var panelId = usePanelId();
    var handleEvent = foo.usePanelEvent();
    var mode = useModalMode();
    var shown = React.useState(null);
    var frame = shown[0], setFrame = shown[1];
    var el = React.useRef(null);
    var live = React.useRef({});
    live.current = { panelId: panelId, handleEvent: handleEvent, view: view, mode: mode };
    var lastReported = React.useRef(null);

    function trigger(uri, params) {
      var c = live.current;
      if (!uri || !c.panelId) return;
      c.handleEvent(c.panelId, { operator: uri, params: params || {} });
    }

    React.useEffect(function () { bridge.looker = looker; }, [looker]);
    bridge.trigger = trigger;

    // (a) seek on a new request
    var nonce = seek ? seek.nonce : null;
    React.useEffect(function () {
      if (!looker || !seek || nonce == null || bridge.appliedNonce === nonce) return undefined;
      if (seek.sample && lookerSampleId(looker) && lookerSampleId(looker) !== seek.sample) return undefined;
      var done = false;
      function apply() {
        if (done) return;
        done = true;
        bridge.appliedNonce = nonce;
        lastReported.current = seek.frame; // the panel knows it: no echo
        looker.seekToFrame(seek.frame);
        hold(looker, seek.frame, view);
      }
      function ready() { return looker.state && looker.state.loaded && looker.state.duration != null; }
      if (ready()) {
        apply();
        return undefined;
      }
      // a new sample's looker: when it has loaded (the event, or a poll if it fired before we listened)
      function onLoad() { if (ready()) apply(); }
      looker.addEventListener("load", onLoad);
      var poll = setInterval(onLoad, 100);
      var giveUp = setTimeout(function () { clearInterval(poll); }, 30000);
      return function () {
        looker.removeEventListener("load", onLoad);
        clearInterval(poll);
        clearTimeout(giveUp);
      };
    }, [looker, nonce]);

    // (b) report the player's frame
    React.useEffect(function () {
      if (!looker || !looker.subscribeToState) return undefined;
      var every = view.report_ms || 500, settle = view.settle_ms || 250;
      var timer = null, lastSent = 0;
      function send() {
        timer = null;
        var f = looker.state.frameNumber;
        setFrame(f);
        if (bridge.release) return; // a seek is held: the panel knows the frame
        if (f == null || f === lastReported.current) return;
        lastReported.current = f;
        lastSent = performance.now();
        trigger(live.current.view.on_frame, { frame: f, sample: lookerSampleId(looker) });
      }
      function schedule(wait) {
        if (timer) clearTimeout(timer);
        timer = setTimeout(send, wait);
      }
      var offFrame = looker.subscribeToState("frameNumber", function (f) {
        if (looker.state.playing) {
          if (!timer) timer = setTimeout(send, Math.max(0, every - (performance.now() - lastSent)));
        } else {
          schedule(settle); // stepping / seeking: once it settles
        }
      });
      var offPlaying = looker.subscribeToState("playing", function (p) {
        if (!p) schedule(0); // paused: now
      });
      setFrame(looker.state.frameNumber);
      lastReported.current = looker.state.frameNumber; // a new looker's start frame is not news
      return function () {
        if (timer) clearTimeout(timer);
        offFrame();
        offPlaying();
      };
    }, [looker]);

    // (c) keyboard shortcuts
    React.useEffect(function () {
      function onKey(e) {
        var c = live.current, keys = c.view.shortcuts || {};
        if (e.defaultPrevented || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
        if (!Object.prototype.hasOwnProperty.call(keys, e.key)) return;
        if (c.mode === "annotate") return; // annotate mode has its own letter keys
        if (typingIn(e.target) || typingIn(document.activeElement)) return;
        if (!el.current || !el.current.getClientRects().length) return; // the panel is not shown
        e.preventDefault();
        e.stopPropagation();
        trigger(keys[e.key], { key: e.key });
      }
      document.addEventListener("keydown", onKey);
      return function () { document.removeEventListener("keydown", onKey); };
    }, []);

    var help = view.help || "";
    return h("div", {
      ref: el, "data-cy": "csl-player-bridge",
      style: { fontSize: "0.8rem", opacity: 0.75, padding: "2px 0" },
    }, (frame != null ? "Player at frame " + frame : "Player: no video") + (help ? " \u00b7 " + help : ""));
  }

  fop.registerComponent({
    name: "CslPlayerBridge",
    label: "CslPlayerBridge",
    component: CslPlayerBridge,
    type: fop.PluginComponentType.Component,
    activator: function () { return true; },
  });
})();
