// Live updates: the server pushes the re-rendered (already escaped)
// #live fragment over server-sent events at each snapshot change.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var events = new EventSource("/events");
  events.addEventListener("snapshot", function (e) {
    live.innerHTML = e.data;
    document.body.setAttribute("data-live", "connected");
  });
  events.onerror = function () {
    // EventSource reconnects by itself.
    document.body.setAttribute("data-live", "reconnecting");
  };
})();
