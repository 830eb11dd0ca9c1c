/* Draws the dashboard's charts (templates/admin/dashboard.html) with Chart.js, from the
   figures the page carries in <script type="application/json" id="dashboard-data">. */
(function () {
  "use strict";

  var COLOURS = ["#417690", "#79aec8", "#5b80b2", "#70bf2b", "#efb80b", "#ba2121", "#8e44ad"];

  function colour(i) {
    return COLOURS[i % COLOURS.length];
  }

  function chart(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) {
      config.options = Object.assign({ responsive: true, animation: false }, config.options || {});
      return new window.Chart(canvas, config);
    }
    return null;
  }

  function funnel(data) {
    chart("chart-funnel", {
      type: "line",
      data: {
        labels: data.funnel.days,
        datasets: data.stages.map(function (stage, i) {
          return { label: stage, data: data.funnel[stage], borderColor: colour(i), backgroundColor: colour(i), tension: 0.2 };
        }),
      },
      options: { interaction: { mode: "index", intersect: false }, scales: { y: { beginAtZero: true } } },
    });
  }

  function revenue(data) {
    var currencies = Object.keys(data.revenue || {});
    if (!currencies.length) {
      return;
    }
    var days = data.funnel.days;
    var datasets = [];
    currencies.forEach(function (currency) {
      Object.keys(data.revenue[currency]).forEach(function (feeType) {
        var byDay = data.revenue[currency][feeType];
        datasets.push({
          label: feeType + " (" + currency + ")",
          stack: currency,
          backgroundColor: colour(datasets.length),
          data: days.map(function (day) { return Number(byDay[day] || 0); }),
        });
      });
    });
    chart("chart-revenue", {
      type: "bar",
      data: { labels: days, datasets: datasets },
      options: { scales: { x: { stacked: true }, y: { stacked: true } } },
    });
  }

  function pings(data) {
    if (!data.pings.length) {
      return;
    }
    chart("chart-pings", {
      type: "bar",
      data: {
        labels: data.pings.map(function (row) { return row.partner; }),
        datasets: [
          { label: "mean latency (ms)", data: data.pings.map(function (row) { return row.mean_ms; }), backgroundColor: colour(0), yAxisID: "ms" },
          { label: "timeout rate (%)", data: data.pings.map(function (row) { return row.timeout_rate * 100; }), backgroundColor: colour(5), yAxisID: "pct" },
        ],
      },
      options: {
        scales: {
          ms: { position: "left", beginAtZero: true },
          pct: { position: "right", beginAtZero: true, max: 100, grid: { drawOnChartArea: false } },
        },
      },
    });
  }

  function caps(data) {
    if (!data.caps.length) {
      return;
    }
    chart("chart-caps", {
      type: "bar",
      data: {
        labels: data.caps.map(function (row) { return row.product; }),
        datasets: [
          { label: "leads today", data: data.caps.map(function (row) { return row.used; }), backgroundColor: colour(0) },
          { label: "daily cap", data: data.caps.map(function (row) { return row.cap; }), backgroundColor: colour(1) },
        ],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true } } },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var source = document.getElementById("dashboard-data");
    if (!source || !window.Chart) {
      return;
    }
    var data = JSON.parse(source.textContent);
    funnel(data);
    revenue(data);
    pings(data);
    caps(data);
  });
})();
