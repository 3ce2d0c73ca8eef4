// adrec preview: keeps an ad's page live. Data arrives as JSON over
// Server-Sent Events (or by polling where EventSource is missing) and is
// rendered with DOM text nodes only: nothing from the data becomes markup.
"use strict";
(function () {
  var root = document.getElementById("ad");
  if (!root) return;
  var base = window.location.pathname.replace(/\/+$/, "");
  var status = document.getElementById("status");

  function safeUrl(u) {
    if (typeof u !== "string") return null;
    try {
      var x = new URL(u);
      return x.protocol === "http:" || x.protocol === "https:" ? x.href : null;
    } catch (e) {
      return null;
    }
  }

  function image(url, cls, alt) {
    var safe = safeUrl(url);
    if (!safe) {
      var s = document.createElement("span");
      s.className = cls + " missing";
      s.textContent = "no image";
      return s;
    }
    var img = document.createElement("img");
    img.className = cls;
    img.alt = alt;
    img.referrerPolicy = "no-referrer";
    img.src = safe;
    return img;
  }

  function cell(tr, cls, child) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (typeof child === "string") td.textContent = child;
    else if (child) td.appendChild(child);
    tr.appendChild(td);
  }

  function stock(inStock) {
    if (inStock === true) return ["in", "in stock"];
    if (inStock === false) return ["out", "out of stock"];
    return ["gone", "not in catalogue"];
  }

  function render(page) {
    var text = function (id, value) {
      document.getElementById(id).textContent = value;
    };
    text("version", page.version == null ? "none" : String(page.version));
    text("generated", page.generated_at || "never");
    text("model", page.model || "");
    var creative = document.getElementById("creative");
    creative.replaceChildren(image(page.creative, "creative", "creative of " + page.ad_id));
    var rows = (page.rows || []).map(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.productId = r.product_id;
      cell(tr, "rank", String(r.rank));
      cell(tr, null, image(r.image_url, "thumb", ""));
      var code = document.createElement("code");
      code.textContent = r.product_id;
      cell(tr, "pid", code);
      cell(tr, "title", r.title || "");
      cell(tr, "score", Number(r.score).toFixed(4));
      var st = stock(r.in_stock);
      cell(tr, "stock " + st[0], st[1]);
      return tr;
    });
    document.getElementById("items").replaceChildren.apply(document.getElementById("items"), rows);
    document.getElementById("empty").hidden = page.version != null;
    root.dataset.version = page.version == null ? "" : String(page.version);
    root.classList.remove("flash");
    void root.offsetWidth;
    root.classList.add("flash");
  }

  function poll() {
    status.textContent = "live (polling)";
    var tick = function () {
      fetch(base + "?format=json", { cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(render)
        .catch(function () { status.textContent = "reconnecting"; })
        .finally(function () { window.setTimeout(tick, 2000); });
    };
    tick();
  }

  if (!window.EventSource) {
    poll();
    return;
  }
  var source = new EventSource(base + "/events");
  source.addEventListener("list", function (e) {
    status.textContent = "live";
    render(JSON.parse(e.data));
  });
  source.onerror = function () {
    status.textContent = "reconnecting";
  };
})();
