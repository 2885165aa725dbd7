// The job dashboard. Served inline by the handler at /api/dashboard; the page's
// Content-Security-Policy allows exactly this script, by hash.
//
// Rules this file keeps:
// - Every value that came from the API (subreddit names, Reddit's error texts, callback
//   origins, ids) goes into the page as text: textContent and text nodes, never innerHTML.
// - The function key comes from the address's fragment (#key=...), which the browser never
//   sends to a server, or from the form the page shows when the API wants a key and has none
//   (without a fragment, the page first asks the API without a key: locally, without
//   FUNCTION_KEYS, it needs none). The key is kept in this closure only (no storage, no
//   cookie: a reload asks again), the fragment is removed from the address at once, and the
//   key is sent only as x-functions-key. No URL the page builds carries it. A key in ?code=
//   has already been sent (and logged) by the time the page runs: the page does not use it,
//   takes it out of the address and says so.
// - Polling: while a shown job is not finished, the next refresh comes after the Retry-After
//   the API sent (1 to 30 s); when every shown job is finished, every 30 s; while the page is
//   hidden, never; after the key was refused, never. The metrics are asked for only when the
//   shown jobs changed (a new job, a new status), or after 5 minutes.
(function () {
  'use strict';

  var PAGE_SIZE = 20;
  var DEFAULT_POLL_MS = 5000;
  var MIN_POLL_MS = 1000;
  var MAX_POLL_MS = 30000;
  var IDLE_POLL_MS = 30000;
  // The metrics follow what the page sees change; this bounds how stale they get from changes
  // it cannot see (jobs on other pages, or filtered out).
  var METRICS_EVERY_MS = 300000;
  var STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'];
  var TERMINAL = ['completed', 'failed', 'cancelled'];
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var apiPath = apiPathBesidePage();

  var state = {
    status: '',
    // pages[i] is the continuation token that loads page i (null for the first).
    pages: [null],
    page: 0,
    jobs: [],
    continuation: null,
    selected: null,
    selectedDoc: null,
    retryAfterMs: null,
    metricsAt: 0,
    metricsStale: true,
    // The prices of the last metrics answer, to price a job's usage the same way.
    prices: null,
    seen: '',
    timer: null,
    ticker: null,
    inFlight: false,
    again: false,
    stopped: false,
    failures: 0,
    nextAt: 0,
    busy: false,
    updatedAt: null,
    // Why the page waits for a key: null (it has one), 'none' (none given) or 'refused'.
    keyWanted: null
  };

  // The function key, or null until one is given.
  var key = null;
  var keyWasInQuery = false;

  // ---------------------------------------------------------------------------------------
  // The key and the API

  // The key in the fragment (#key=...), or null; the fragment's key and the query's code are
  // removed from the address, so the page's own address (and a bookmark or screenshot of it)
  // holds neither. The fragment is split by hand: URLSearchParams would read a + as a space.
  function takeKeyFromAddress() {
    var url = new URL(window.location.href);
    var found = null;
    var rest = url.hash.replace(/^#/, '').split('&').filter(function (part) {
      if (part.slice(0, 4) !== 'key=') {
        return part !== '';
      }
      try {
        found = decodeURIComponent(part.slice(4));
      } catch (malformed) {
        found = part.slice(4);
      }
      return false;
    });
    var inQuery = url.searchParams.has('code');
    if (found === null && !inQuery) {
      return null;
    }
    keyWasInQuery = keyWasInQuery || inQuery;
    url.searchParams.delete('code');
    url.hash = rest.join('&');
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    return found ? found : null;
  }

  // SummaryWomble sits beside the dashboard under the same route prefix (/api by default).
  function apiPathBesidePage() {
    var path = window.location.pathname;
    var beside = path.replace(/\/dashboard\/?$/i, '/SummaryWomble');
    return beside === path ? '/api/SummaryWomble' : beside;
  }

  // sentKey: the key the failed call carried (null for none), so that a refusal of a key
  // the page has since replaced is not taken for a refusal of the new one.
  function ApiFailure(kind, status, text, sentKey) {
    this.kind = kind;
    this.status = status;
    this.text = text;
    this.sentKey = sentKey;
  }

  function parseRetryAfter(value) {
    if (!value) {
      return null;
    }
    var seconds = Number(value);
    if (Number.isFinite(seconds)) {
      return seconds * 1000;
    }
    var at = Date.parse(value);
    return Number.isNaN(at) ? null : at - Date.now();
  }

  function api(method, query, body) {
    var url = apiPath;
    if (query) {
      url += '?' + new URLSearchParams(query).toString();
    }
    var headers = { Accept: 'application/json' };
    var sentKey = key;
    if (sentKey !== null) {
      headers['x-functions-key'] = sentKey;
    }
    var init = {
      method: method,
      headers: headers,
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer'
    };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(
      function (response) {
        var retryAfter = parseRetryAfter(response.headers.get('Retry-After'));
        return response.text().then(function (text) {
          var data = null;
          try {
            data = text ? JSON.parse(text) : null;
          } catch (ignored) {
            data = null;
          }
          if (!response.ok) {
            var said = data && typeof data.error === 'string' ? data.error : '';
            var kind = response.status === 401 || response.status === 403 ? 'key' : 'http';
            throw new ApiFailure(kind, response.status, said, sentKey);
          }
          return { data: data, retryAfter: retryAfter };
        });
      },
      function (error) {
        throw new ApiFailure('network', 0, String(error && error.message ? error.message : error), sentKey);
      }
    );
  }

  // ---------------------------------------------------------------------------------------
  // Building the page: elements and text only

  function byId(id) {
    return document.getElementById(id);
  }

  // el('td', {class: 'x'}, 'text', child, ...): strings become text nodes.
  function el(tag, attributes) {
    var node = document.createElement(tag);
    setAttributes(node, attributes);
    for (var i = 2; i < arguments.length; i++) {
      append(node, arguments[i]);
    }
    return node;
  }

  function svg(tag, attributes, text) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attributes);
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function setAttributes(node, attributes) {
    if (!attributes) {
      return;
    }
    Object.keys(attributes).forEach(function (name) {
      var value = attributes[name];
      if (value !== null && value !== undefined && value !== false) {
        node.setAttribute(name, String(value));
      }
    });
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) {
      return;
    }
    if (Array.isArray(child)) {
      child.forEach(function (item) {
        append(node, item);
      });
    } else if (typeof child === 'object') {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
  }

  function known(status) {
    return STATUSES.indexOf(status) >= 0 ? status : 'unknown';
  }

  function isTerminal(job) {
    return TERMINAL.indexOf(job.status) >= 0;
  }

  // The colour is a help; the word carries the meaning.
  function badge(status, extra) {
    return el('span', { class: 'badge status-' + known(status) }, String(status), extra ? ' · ' + extra : null);
  }

  function outcomeBadge(status) {
    var tone = { success: 'completed', fetch_failed: 'failed', upload_failed: 'failed', skipped: 'cancelled' }[status] || 'unknown';
    return el('span', { class: 'badge status-' + tone }, String(status).replace('_', ' '));
  }

  function progressOf(job) {
    var progress = job.progress || {};
    var total = Math.max(0, Number(progress.total) || 0);
    var done = Math.min(total, Math.max(0, Number(progress.completed) || 0));
    var bar = el('progress', {
      class: 'status-' + known(job.status),
      max: total || 1,
      value: total ? done : 0,
      'aria-label': 'Progress: ' + done + ' of ' + total + ' subreddits'
    });
    return el('span', { class: 'progress' }, bar, el('span', { class: 'progress-text' }, done + '/' + total));
  }

  function pad(number) {
    return number < 10 ? '0' + number : String(number);
  }

  function formatTime(iso) {
    if (!iso) {
      return '—';
    }
    var at = new Date(iso);
    if (Number.isNaN(at.getTime())) {
      return String(iso);
    }
    return at.getFullYear() + '-' + pad(at.getMonth() + 1) + '-' + pad(at.getDate()) + ' ' +
      pad(at.getHours()) + ':' + pad(at.getMinutes()) + ':' + pad(at.getSeconds());
  }

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
      return '—';
    }
    if (seconds < 60) {
      return seconds.toFixed(1) + ' s';
    }
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return minutes + ' min ' + Math.floor(seconds % 60) + ' s';
    }
    return Math.floor(minutes / 60) + ' h ' + (minutes % 60) + ' min';
  }

  // Seconds from start to finish; for a running job, to now.
  function durationOf(job) {
    if (!job.started_at) {
      return null;
    }
    var end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
  }

  function durationCell(job) {
    var attributes = { class: 'duration' };
    if (!isTerminal(job) && job.started_at) {
      attributes['data-started'] = job.started_at;
    }
    return el('span', attributes, formatSeconds(durationOf(job)));
  }

  function shortId(id) {
    return String(id).slice(0, 8);
  }

  function topicsSummary(job) {
    var topics = (job.request && job.request.topics) || [];
    var shown = topics.slice(0, 2).map(function (name) {
      return 'r/' + name;
    });
    var more = topics.length > 2 ? ' +' + (topics.length - 2) : '';
    return shown.join(', ') + more;
  }

  // One wrapper per cell, so that a narrow screen can put the label beside it.
  function cell(label, content, className) {
    return el('td', { 'data-label': label, class: className || null }, el('div', { class: 'value' }, content));
  }

  // ---------------------------------------------------------------------------------------
  // Jobs

  function renderJobs() {
    var focused = document.activeElement;
    var focusedJob = focused && focused.getAttribute ? focused.getAttribute('data-job-id') : null;
    var rows = document.createDocumentFragment();
    state.jobs.forEach(function (job) {
      rows.appendChild(jobRow(job));
    });
    byId('job-rows').replaceChildren(rows);
    if (focusedJob) {
      var again = document.querySelector('#job-rows button[data-job-id="' + CSS.escape(focusedJob) + '"]');
      if (again) {
        again.focus();
      }
    }

    var empty = byId('jobs-empty');
    empty.hidden = state.jobs.length > 0;
    empty.textContent = state.status
      ? 'No ' + state.status + ' jobs on this page.'
      : 'No jobs yet. Start one with POST /api/SummaryWomble or "handler submit".';
    byId('job-table').hidden = state.jobs.length === 0;

    byId('newer').disabled = state.page === 0;
    byId('older').disabled = !state.continuation;
    byId('page-number').textContent = 'Page ' + (state.page + 1);
    Array.prototype.forEach.call(document.querySelectorAll('#filters button'), function (button) {
      button.setAttribute('aria-pressed', String(button.getAttribute('data-status') === state.status));
    });
  }

  function jobRow(job) {
    var row = el('tr', { 'data-job-id': job.job_id, class: job.job_id === state.selected ? 'selected' : null });
    var cancelling = job.cancel_requested_at && !isTerminal(job) ? 'cancelling' : null;
    var priority = job.request && job.request.priority ? job.request.priority : 'normal';
    row.appendChild(cell('Job', [
      el('code', { title: job.job_id }, shortId(job.job_id)),
      el('span', { class: 'topics' }, topicsSummary(job)),
      job.retry_of ? el('span', { class: 'muted' }, 'retry of ' + shortId(job.retry_of)) : null
    ], 'job'));
    var created = formatTime(job.created_at).split(' ');
    row.appendChild(cell('Created', [
      el('span', { class: 'date' }, created[0]),
      created[1] ? el('span', { class: 'time' }, created[1]) : null
    ], 'created'));
    row.appendChild(cell('Status', badge(job.status, cancelling)));
    row.appendChild(cell('Progress', progressOf(job)));
    row.appendChild(cell('Step', (job.progress && job.progress.step) || '—', 'step'));
    row.appendChild(cell('Duration', durationCell(job)));
    row.appendChild(cell('Priority', el('span', { class: 'priority-' + (priority === 'high' ? 'high' : 'normal') }, priority)));
    row.appendChild(cell('', el('button', {
      type: 'button',
      class: 'details',
      'data-job-id': job.job_id,
      'aria-label': 'Details of job ' + shortId(job.job_id)
    }, 'Details'), 'actions-cell'));
    return row;
  }

  // ---------------------------------------------------------------------------------------
  // One job

  function fact(list, term, value) {
    list.appendChild(el('dt', null, term));
    list.appendChild(el('dd', null, value));
  }

  // Only the origin of a callback is shown: the rest of its URL may hold a secret.
  function callbackOrigin(url) {
    try {
      return new URL(url).origin;
    } catch (ignored) {
      return 'not a URL';
    }
  }

  function renderDetail() {
    var section = byId('detail');
    var job = state.selectedDoc;
    section.hidden = !state.selected;
    byId('layout').classList.toggle('with-detail', Boolean(state.selected));
    if (!state.selected) {
      return;
    }
    Array.prototype.forEach.call(document.querySelectorAll('#job-rows tr'), function (row) {
      row.classList.toggle('selected', row.getAttribute('data-job-id') === state.selected);
    });
    byId('detail-title').textContent = 'Job ' + shortId(state.selected);
    byId('detail-id').textContent = state.selected;
    var facts = byId('detail-facts');
    var request = byId('detail-request');
    var results = byId('result-rows');
    facts.replaceChildren();
    request.replaceChildren();
    results.replaceChildren();
    if (!job) {
      fact(facts, 'Status', 'loading…');
      byId('cancel').disabled = true;
      byId('retry').disabled = true;
      byId('results-empty').hidden = true;
      return;
    }
    var cancelling = job.cancel_requested_at && !isTerminal(job) ? 'cancelling' : null;
    fact(facts, 'Status', badge(job.status, cancelling));
    fact(facts, 'Progress', progressOf(job));
    fact(facts, 'Step', (job.progress && job.progress.step) || '—');
    fact(facts, 'Created', formatTime(job.created_at));
    fact(facts, 'Started', formatTime(job.started_at));
    fact(facts, 'Finished', formatTime(job.finished_at));
    fact(facts, 'Duration', durationCell(job));
    if (job.cancel_requested_at) {
      fact(facts, 'Cancel requested', formatTime(job.cancel_requested_at));
    }
    if (job.retry_of) {
      fact(facts, 'Retry of', el('button', {
        type: 'button',
        class: 'link',
        id: 'open-retry-of',
        'data-open-job': job.retry_of
      }, job.retry_of));
    }
    if (job.error) {
      fact(facts, 'Error', el('span', { class: 'error-text' }, job.error));
    }
    if (job.usage) {
      var requests = job.usage.storage_requests || {};
      var total = ['read', 'write', 'list', 'delete', 'queue'].reduce(function (sum, kind) {
        return sum + (requests[kind] || 0);
      }, 0);
      fact(facts, 'Used', el('span', { 'data-usage': '' }, total + ' storage requests, ' +
        job.usage.reddit_requests + ' Reddit requests, ' +
        formatSeconds(job.usage.handler_seconds)));
      fact(facts, 'Estimated cost', el('span', { 'data-cost': '' },
        state.prices ? formatUsd(costOf(job.usage, state.prices)) : '—'));
    }
    if (job.results) {
      var succeeded = (job.results.results || []).filter(function (outcome) {
        return outcome.status === 'success';
      }).length;
      fact(facts, 'Topics', String(job.results.total_topics) + ' from ' + succeeded + ' of ' +
        job.results.total_subreddits + ' subreddits');
    }

    var asked = job.request || {};
    fact(request, 'Source', asked.source || '—');
    fact(request, 'Subreddits', el('span', { class: 'names' }, (asked.topics || []).map(function (name) {
      return 'r/' + name;
    }).join(' ')));
    fact(request, 'Limit', asked.limit === undefined ? '—' : String(asked.limit) + ' posts each');
    fact(request, 'Priority', asked.priority || 'normal');
    if (asked.callback_url) {
      fact(request, 'Callback to', callbackOrigin(asked.callback_url));
    }

    // Finished subreddits: the final results, or while running what is recorded so far.
    var outcomes = job.results ? job.results.results : (job.outcomes || []);
    outcomes.forEach(function (outcome) {
      var where = outcome.error
        ? el('span', { class: 'error-text' }, outcome.error)
        : el('code', null, outcome.blob_name || '—');
      results.appendChild(el('tr', null,
        cell('Subreddit', 'r/' + outcome.subreddit),
        cell('Result', outcomeBadge(outcome.status)),
        cell('Topics', outcome.topics_count === undefined ? '—' : String(outcome.topics_count)),
        cell(outcome.error ? 'Error' : 'Blob', where, 'where')));
    });
    byId('results-empty').hidden = outcomes.length > 0;

    byId('cancel').disabled = isTerminal(job) || Boolean(job.cancel_requested_at);
    byId('retry').disabled = !isTerminal(job);
  }

  function openJob(id) {
    notice('');
    state.selected = id;
    var onPage = state.jobs.filter(function (job) {
      return job.job_id === id;
    })[0];
    state.selectedDoc = onPage || null;
    renderDetail();
    byId('detail-title').focus();
    if (!onPage) {
      refresh();
    }
  }

  function closeJob() {
    var was = state.selected;
    state.selected = null;
    state.selectedDoc = null;
    renderDetail();
    var button = was && document.querySelector('#job-rows button[data-job-id="' + CSS.escape(was) + '"]');
    if (button) {
      button.focus();
    }
    schedule();
  }

  // ---------------------------------------------------------------------------------------
  // Metrics

  // One figure of the metrics panel; `name` marks it for the tests and the stylesheet.
  function figure(term, value, name) {
    return el('div', { class: 'figure', 'data-figure': name }, el('dt', null, term), el('dd', null, value));
  }

  // The queues' message counts now, under queue dispatch (a count the API could not read is a
  // dash); under inline dispatch there is no queue, and the panel says so.
  function queueFigures(depth) {
    if (depth === null || depth === undefined) {
      return [figure('Queue', 'inline dispatch: no queue', 'no-queue')];
    }
    var count = function (value) {
      return typeof value === 'number' ? String(value) : '—';
    };
    return [
      figure('Job queue', count(depth.jobs), 'queue-jobs'),
      figure('Poison queue', count(depth.poison), 'queue-poison')
    ];
  }

  // US dollars, to the significant figures a cost per job needs.
  function formatUsd(usd) {
    if (usd === null || usd === undefined) {
      return '—';
    }
    return '$' + (usd >= 0.01 ? usd.toFixed(2) : usd.toPrecision(2));
  }

  // The estimated cost of the last 24 hours' jobs, and per job (cost.md).
  function costFigures(cost) {
    if (!cost) {
      return [];
    }
    return [
      figure('Cost, 24 h', formatUsd(cost.estimated_usd), 'cost-day'),
      figure('Cost per job', formatUsd(cost.estimated_usd_per_job), 'cost-per-job')
    ];
  }

  // A job's usage at the prices the metrics answer gave, as the handler prices it.
  function costOf(usage, prices) {
    var requests = usage.storage_requests || {};
    var compute = (usage.handler_seconds || 0) * prices.instance_gb * prices.usd_per_gb_second;
    var storage = ((requests.write || 0) + (requests.list || 0)) * prices.usd_per_write +
      ((requests.read || 0) + (requests.delete || 0)) * prices.usd_per_read +
      (requests.queue || 0) * prices.usd_per_queue_request;
    return compute + storage;
  }

  function renderMetrics(metrics) {
    var counts = metrics.by_status || {};
    var figures = [
      figure('Jobs', String(metrics.total_jobs || 0), 'jobs'),
      figure('Success rate', metrics.success_rate === null || metrics.success_rate === undefined
        ? '—'
        : (metrics.success_rate * 100).toFixed(0) + ' %', 'success-rate'),
      figure('Mean duration', formatSeconds(metrics.mean_duration_seconds), 'mean-duration'),
      figure('p95 duration', formatSeconds(metrics.p95_duration_seconds), 'p95-duration')
    ].concat(queueFigures(metrics.queue_depth)).concat(costFigures(metrics.cost));
    var hadPrices = state.prices !== null;
    state.prices = (metrics.cost && metrics.cost.prices) || null;
    if (!hadPrices && state.prices && state.selectedDoc) {
      renderDetail();
    }
    byId('metrics-figures').replaceChildren.apply(byId('metrics-figures'), figures);

    byId('metrics-chart').replaceChildren(statusChart(counts));
    byId('metrics').hidden = false;

    var failures = Object.keys(metrics.failures_by_subreddit || {}).map(function (name) {
      return [name, metrics.failures_by_subreddit[name]];
    }).sort(function (a, b) {
      return b[1] - a[1] || (a[0] < b[0] ? -1 : 1);
    }).slice(0, 8);
    byId('metrics-failures').replaceChildren.apply(byId('metrics-failures'), failures.map(function (entry) {
      return el('li', null, el('span', { class: 'name' }, 'r/' + entry[0]), el('span', { class: 'count' }, String(entry[1])));
    }));
    byId('metrics-no-failures').hidden = failures.length > 0;
  }

  // Jobs by status as horizontal bars, drawn as inline SVG; each bar is labelled in words.
  function statusChart(counts) {
    var rowHeight = 26;
    var labelWidth = 92;
    var barSpace = 190;
    var largest = Math.max.apply(null, STATUSES.map(function (status) {
      return Number(counts[status]) || 0;
    }).concat([1]));
    var said = STATUSES.map(function (status) {
      return status + ' ' + (Number(counts[status]) || 0);
    }).join(', ');
    var chart = svg('svg', {
      viewBox: '0 0 ' + (labelWidth + barSpace + 40) + ' ' + rowHeight * STATUSES.length,
      role: 'img',
      'aria-label': 'Jobs by status: ' + said,
      class: 'status-chart'
    });
    chart.appendChild(svg('title', null, 'Jobs by status: ' + said));
    STATUSES.forEach(function (status, index) {
      var count = Number(counts[status]) || 0;
      var y = index * rowHeight;
      var width = count ? Math.max(2, Math.round((count / largest) * barSpace)) : 0;
      chart.appendChild(svg('text', { x: 0, y: y + 17, class: 'chart-label' }, status));
      chart.appendChild(svg('rect', { x: labelWidth, y: y + 5, width: width, height: 16, rx: 2, class: 'bar status-' + status }));
      chart.appendChild(svg('text', { x: labelWidth + width + 6, y: y + 17, class: 'chart-count' }, String(count)));
    });
    return chart;
  }

  // ---------------------------------------------------------------------------------------
  // Refreshing

  function shownJobs() {
    return state.selectedDoc ? state.jobs.concat([state.selectedDoc]) : state.jobs;
  }

  // The metrics change when a job comes or changes state: fetch them then (a running job's
  // progress alone changes nothing in them), not on every poll.
  function noteChanges() {
    var seen = shownJobs().map(function (job) {
      return job.job_id + ':' + job.status;
    }).join(' ');
    if (seen !== state.seen) {
      state.metricsStale = true;
      state.seen = seen;
    }
  }

  function refresh() {
    if (state.stopped) {
      return;
    }
    if (state.inFlight) {
      state.again = true;
      return;
    }
    clearTimeout(state.timer);
    state.timer = null;
    state.inFlight = true;
    var query = { top: String(PAGE_SIZE) };
    if (state.status) {
      query.status = state.status;
    }
    if (state.pages[state.page]) {
      query.continuation = state.pages[state.page];
    }
    var retryAfter = null;
    api('GET', query)
      .then(function (list) {
        state.jobs = Array.isArray(list.data.jobs) ? list.data.jobs : [];
        state.continuation = list.data.continuation || null;
        retryAfter = list.retryAfter;
        if (!state.selected) {
          return null;
        }
        var onPage = state.jobs.filter(function (job) {
          return job.job_id === state.selected;
        })[0];
        if (onPage) {
          state.selectedDoc = onPage;
          return null;
        }
        if (state.selectedDoc && isTerminal(state.selectedDoc) && state.selectedDoc.job_id === state.selected) {
          return null;
        }
        var wanted = state.selected;
        return api('GET', { job_id: wanted }).then(function (one) {
          if (state.selected === wanted) {
            state.selectedDoc = one.data;
          }
          if (one.retryAfter !== null) {
            retryAfter = retryAfter === null ? one.retryAfter : Math.min(retryAfter, one.retryAfter);
          }
        }, function (failure) {
          // A job purged since it was opened: close it rather than ask again and again.
          if (failure instanceof ApiFailure && failure.status === 404 && state.selected === wanted) {
            state.selected = null;
            state.selectedDoc = null;
            notice('Job ' + shortId(wanted) + ' no longer exists.');
            return;
          }
          throw failure;
        });
      })
      .then(function () {
        noteChanges();
        if (!state.metricsStale && Date.now() - state.metricsAt < METRICS_EVERY_MS) {
          return null;
        }
        return api('POST', null, { action: 'metrics' }).then(function (metrics) {
          state.metricsAt = Date.now();
          state.metricsStale = false;
          renderMetrics(metrics.data || {});
        });
      })
      .then(function () {
        state.retryAfterMs = retryAfter;
        state.failures = 0;
        state.updatedAt = new Date();
        showMessage(null);
        renderJobs();
        renderDetail();
      })
      .catch(failed)
      .then(function () {
        state.inFlight = false;
        if (state.again) {
          state.again = false;
          refresh();
        } else {
          schedule();
        }
      });
  }

  function failed(failure, fromAction) {
    if (!(failure instanceof ApiFailure)) {
      showMessage('The dashboard hit an error of its own: ' + String(failure), fromAction);
      state.failures += 1;
      return;
    }
    if (failure.kind === 'key' && failure.sentKey !== key) {
      // A key given while this call was out: the next refresh uses it.
      state.again = true;
      return;
    }
    if (failure.kind === 'key' && key === null) {
      askForKey('none', keyWasInQuery ? QUERY_KEY_WARNING : null);
      return;
    }
    if (failure.kind === 'key') {
      // Polling with a refused key only repeats the refusal: stop, forget it, ask for another.
      askForKey('refused', 'The function key was refused (HTTP ' + failure.status + ')' +
        (failure.text ? ': ' + failure.text : '.') +
        ' Enter a key that SummaryWomble accepts: its own function key.');
      return;
    }
    state.failures += 1;
    if (failure.kind === 'network') {
      showMessage('The API cannot be reached (' + failure.text + '). Trying again shortly.');
    } else if (failure.status === 400 && state.page > 0) {
      // A page token the API no longer accepts: start from the first page again.
      state.pages = [null];
      state.page = 0;
      showMessage('That page is gone; showing the newest jobs again.');
    } else {
      showMessage('The API answered HTTP ' + failure.status + (failure.text ? ': ' + failure.text : '.'), fromAction);
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = null;
    state.busy = shownJobs().some(function (job) {
      return !isTerminal(job);
    });
    if (!state.stopped && !document.hidden) {
      var delay;
      if (state.failures > 0) {
        delay = Math.min(MAX_POLL_MS, DEFAULT_POLL_MS * Math.pow(2, state.failures - 1));
      } else if (state.busy) {
        var asked = state.retryAfterMs === null ? DEFAULT_POLL_MS : state.retryAfterMs;
        delay = Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, asked));
      } else {
        delay = IDLE_POLL_MS;
      }
      state.nextAt = Date.now() + delay;
      state.timer = setTimeout(refresh, delay);
    }
    tick();
    describeRefresh();
  }

  function describeRefresh() {
    var text;
    if (state.keyWanted === 'refused') {
      text = 'Not refreshing: the key was refused.';
    } else if (state.keyWanted === 'none') {
      text = 'Waiting for a function key.';
    } else if (state.stopped) {
      text = 'Not refreshing.';
    } else if (document.hidden) {
      text = 'Paused while the page is hidden.';
    } else {
      var seconds = Math.max(1, Math.round((state.nextAt - Date.now()) / 1000));
      text = (state.updatedAt ? 'Updated ' + formatTime(state.updatedAt.toISOString()).slice(11) + '. ' : '') +
        (state.busy ? 'Jobs are running: next update in ' + seconds + ' s.' : 'Nothing running: next update in ' + seconds + ' s.');
    }
    byId('refresh-state').textContent = text;
  }

  // While jobs run, their durations count up each second, without asking the API.
  function tick() {
    var running = document.querySelectorAll('.duration[data-started]');
    Array.prototype.forEach.call(running, function (node) {
      node.textContent = formatSeconds(Math.max(0, (Date.now() - Date.parse(node.getAttribute('data-started'))) / 1000));
    });
    if (running.length > 0 && !state.ticker) {
      state.ticker = setInterval(tick, 1000);
    } else if (running.length === 0 && state.ticker) {
      clearInterval(state.ticker);
      state.ticker = null;
    }
  }

  // A message from a refresh goes with the next good refresh; one from a button stays until
  // the next button.
  function showMessage(text, fromAction) {
    var box = byId('message');
    if (!text && box.getAttribute('data-from-action') === 'true') {
      return;
    }
    box.hidden = !text;
    box.textContent = text || '';
    box.setAttribute('data-from-action', String(Boolean(text && fromAction)));
  }

  function notice(text) {
    byId('notice').textContent = text;
  }

  // ---------------------------------------------------------------------------------------
  // Actions

  function act(button, body, done) {
    button.disabled = true;
    byId('message').setAttribute('data-from-action', 'false');
    showMessage(null);
    api('POST', null, body)
      .then(function (answer) {
        state.metricsStale = true;
        done(answer.data || {});
      })
      .catch(function (failure) {
        failed(failure, true);
        renderDetail();
      })
      .then(function () {
        refresh();
      });
  }

  byId('cancel').addEventListener('click', function (event) {
    var id = state.selected;
    act(event.currentTarget, { action: 'cancel', job_id: id }, function (updated) {
      state.selectedDoc = updated;
      notice('Cancel requested for job ' + shortId(id) + '. It stops before its next subreddit.');
    });
  });

  byId('retry').addEventListener('click', function (event) {
    var id = state.selected;
    act(event.currentTarget, { action: 'retry', job_id: id }, function (ticket) {
      notice('Job ' + shortId(id) + ' retried as job ' + shortId(ticket.job_id) + '.');
      state.selected = ticket.job_id;
      state.selectedDoc = null;
      renderDetail();
    });
  });

  byId('close-detail').addEventListener('click', closeJob);

  byId('detail').addEventListener('click', function (event) {
    var target = event.target.closest('[data-open-job]');
    if (target) {
      openJob(target.getAttribute('data-open-job'));
    }
  });

  byId('job-rows').addEventListener('click', function (event) {
    var target = event.target.closest('button.details');
    if (target) {
      openJob(target.getAttribute('data-job-id'));
    }
  });

  byId('filters').addEventListener('click', function (event) {
    var target = event.target.closest('button[data-status]');
    if (!target) {
      return;
    }
    state.status = target.getAttribute('data-status');
    state.pages = [null];
    state.page = 0;
    renderJobs();
    refresh();
  });

  byId('older').addEventListener('click', function () {
    if (state.continuation) {
      state.pages[state.page + 1] = state.continuation;
      state.page += 1;
      refresh();
    }
  });

  byId('newer').addEventListener('click', function () {
    if (state.page > 0) {
      state.page -= 1;
      refresh();
    }
  });

  byId('refresh').addEventListener('click', function () {
    state.metricsStale = true;
    refresh();
  });

  // ---------------------------------------------------------------------------------------
  // The key: shown the form when there is none, started when there is one

  // Nothing on the page can be true without the API: without a key, the form (and the
  // message, if any) stand alone.
  function askForKey(why, text) {
    key = null;
    state.keyWanted = why;
    state.stopped = true;
    clearTimeout(state.timer);
    state.timer = null;
    byId('layout').hidden = true;
    byId('refresh').disabled = true;
    byId('key-entry').hidden = false;
    byId('message').setAttribute('data-from-action', 'false');
    showMessage(text || null);
    var input = byId('key-input');
    input.value = '';
    input.focus();
    describeRefresh();
  }

  function start(given) {
    key = given;
    state.keyWanted = null;
    state.stopped = false;
    state.failures = 0;
    byId('key-entry').hidden = true;
    byId('layout').hidden = false;
    byId('refresh').disabled = false;
    byId('message').setAttribute('data-from-action', 'false');
    showMessage(null);
    if (keyWasInQuery && given !== null) {
      notice(QUERY_KEY_WARNING);
    }
    refresh();
  }

  var QUERY_KEY_WARNING = 'This page was opened with a key in its address (?code=), which the ' +
    'browser sends to the server and its logs keep. The page did not use it and took it out of ' +
    'the address; consider renewing that key. Open the page as /api/dashboard#key=<key>, or ' +
    'enter the key here.';

  byId('key-form').addEventListener('submit', function (event) {
    // The field has no name, so even a submission that got past this would carry no key.
    event.preventDefault();
    var input = byId('key-input');
    var given = input.value.trim();
    input.value = '';
    if (!given) {
      showMessage('Enter a function key.');
      input.focus();
      return;
    }
    start(given);
  });

  // A key pasted into the address of the open page arrives as a new fragment, without a load.
  window.addEventListener('hashchange', function () {
    var given = takeKeyFromAddress();
    if (given !== null) {
      start(given);
    }
  });

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && !state.stopped && Date.now() >= state.nextAt) {
      refresh();
    } else {
      schedule();
    }
  });

  start(takeKeyFromAddress());
})();
