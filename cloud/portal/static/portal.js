// Progressive enhancement only: every page works without this file.
// Adds the strength meter, live requirement checks and the confirm-match hint.
(function () {
  "use strict";
  var pw = document.getElementById("new_password");
  if (!pw) return;
  var confirm = document.getElementById("confirm_password");
  var meter = document.getElementById("meter");
  var fill = document.getElementById("meter-fill");
  var text = document.getElementById("meter-text");
  var hint = document.getElementById("match-hint");
  var req = document.getElementById("requirements");
  var min = req ? parseInt(req.getAttribute("data-min") || "0", 10) : 0;
  var complex = req ? req.getAttribute("data-complex") === "true" : false;
  var items = req ? req.querySelectorAll("li") : [];

  function classes(v) {
    var n = 0;
    if (/[a-z]/.test(v)) n++;
    if (/[A-Z]/.test(v)) n++;
    if (/[0-9]/.test(v)) n++;
    if (/[^A-Za-z0-9]/.test(v)) n++;
    return n;
  }
  function score(v) {
    if (!v) return 0;
    var s = 0, c = classes(v);
    if (v.length >= 8) s++;
    if (v.length >= 12) s++;
    if (v.length >= 16) s++;
    if (c >= 3) s++;
    if (/^(.)\1+$/.test(v) || /password|123456|qwerty/i.test(v)) s = 0;
    return Math.max(1, Math.min(4, s));
  }
  var labels = ["", "Weak", "Fair", "Good", "Strong"];
  function update() {
    var v = pw.value;
    if (meter) {
      meter.hidden = !v;
      var s = score(v);
      fill.style.width = (s * 25) + "%";
      fill.className = "s" + s;
      text.textContent = v ? labels[s] : "";
    }
    for (var i = 0; i < items.length; i++) {
      var li = items[i], t = li.textContent, met = null;
      if (/^At least (\d+) characters/.test(t)) met = v.length >= min;
      else if (/three of/.test(t)) met = complex ? classes(v) >= 3 : null;
      if (met !== null) li.classList.toggle("met", met && v.length > 0);
    }
    if (hint && confirm) {
      if (!confirm.value) { hint.textContent = ""; hint.className = "field-hint"; }
      else if (confirm.value === v) { hint.textContent = "Passwords match"; hint.className = "field-hint good"; }
      else { hint.textContent = "Passwords don't match yet"; hint.className = "field-hint bad"; }
    }
  }
  pw.addEventListener("input", update);
  if (confirm) confirm.addEventListener("input", update);
})();
