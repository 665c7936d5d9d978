/* IMS workflow editor: the bpmn-js modeler with our own side panel (no build step).
 *
 * The panel edits what councils change: names, lane roles, gateway conditions (checked by the
 * server as they are typed), timer durations and service operators (picked from the registry).
 * Submitting asks the server to check the diagram exactly as a deploy would, shows the problems
 * next to their elements, or the changes since the active version, then submits it for approval
 * with a version check: it becomes active when a Head of Finance approves the proposal.
 */
(function () {
  'use strict';

  var cfg = JSON.parse(document.getElementById('editor-config').textContent);
  var T = cfg.text;
  var SPIFF_URI = 'http://spiffworkflow.org/bpmn/schema/1.0/core';

  /* The SpiffWorkflow extension elements our workflows use, so the modeler keeps and edits them. */
  var SPIFF = {
    name: 'SpiffWorkflow', uri: SPIFF_URI, prefix: 'spiffworkflow', associations: [],
    types: [
      { name: 'serviceTaskOperator', superClass: ['Element'], properties: [
        { name: 'id', isAttr: true, type: 'String' },
        { name: 'resultVariable', isAttr: true, type: 'String' },
        { name: 'parameters', type: 'parameters' }] },
      { name: 'parameters', superClass: ['Element'], properties: [
        { name: 'parameter', type: 'parameter', isMany: true }] },
      { name: 'parameter', superClass: ['Element'], properties: [
        { name: 'id', isAttr: true, type: 'String' },
        { name: 'type', isAttr: true, type: 'String' },
        { name: 'value', isAttr: true, type: 'String' }] },
      { name: 'instructionsForEndUser', superClass: ['Element'], properties: [
        { name: 'value', isBody: true, type: 'String' }] },
      { name: 'properties', superClass: ['Element'], properties: [
        { name: 'property', type: 'property', isMany: true }] },
      { name: 'property', superClass: ['Element'], properties: [
        { name: 'name', isAttr: true, type: 'String' },
        { name: 'value', isAttr: true, type: 'String' }] }
    ]
  };

  var modeler = new BpmnJS({ container: '#bpmn-editor', moddleExtensions: { spiffworkflow: SPIFF } });
  var modeling = modeler.get('modeling');
  var moddle = modeler.get('moddle');
  var registry = modeler.get('elementRegistry');
  var overlays = modeler.get('overlays');
  var canvas = modeler.get('canvas');
  var selection = modeler.get('selection');
  var commandStack = modeler.get('commandStack');
  var eventBus = modeler.get('eventBus');

  var baseVersion = cfg.base_version;
  var problems = [];        // [{element, message}] from the last check
  var dirty = false;
  var current = null;       // the selected element
  var status = document.getElementById('status');
  var propsBody = document.getElementById('props-body');

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(c); } });
    return node;
  }

  function say(kind, message, id) {
    status.innerHTML = '';
    if (!message) { return null; }
    var box = el('div', { 'class': 'alert alert-' + kind, text: message });
    if (id) { box.id = id; }
    status.appendChild(box);
    return box;
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRFToken': cfg.csrf_token,
                 'Accept': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        return { status: resp.status, data: data };
      });
    });
  }

  function typeName(bo) { return bo.$type.replace('bpmn:', ''); }

  function laneOf(bo) {
    var found = null;
    registry.filter(function (e) { return e.type === 'bpmn:Lane'; }).forEach(function (lane) {
      if ((lane.businessObject.flowNodeRef || []).indexOf(bo) !== -1) { found = lane.businessObject; }
    });
    return found;
  }

  function timerOf(bo) {
    return (bo.eventDefinitions || []).filter(function (d) {
      return d.$type === 'bpmn:TimerEventDefinition';
    })[0];
  }

  function operatorOf(bo) {
    var values = (bo.extensionElements && bo.extensionElements.values) || [];
    return values.filter(function (v) { return v.$type === 'spiffworkflow:serviceTaskOperator'; })[0];
  }

  function isGatewayFlow(bo) {
    return bo.$type === 'bpmn:SequenceFlow' && bo.sourceRef &&
      /Gateway$/.test(bo.sourceRef.$type) && bo.sourceRef.$type !== 'bpmn:ParallelGateway';
  }

  /* ---------------------------------------------------------------- problems on the diagram */
  function showProblems(list) {
    problems = list || [];
    overlays.remove({ type: 'ims-error' });
    registry.getAll().forEach(function (e) { canvas.removeMarker(e, 'ims-error-marker'); });
    var panel = document.getElementById('problems-panel');
    var ul = document.getElementById('problems');
    ul.innerHTML = '';
    panel.classList.toggle('hidden', problems.length === 0);
    var counts = {};
    problems.forEach(function (p) {
      var target = p.element && registry.get(p.element);
      var li = el('li', {});
      if (target) {
        var link = el('a', { href: '#', 'data-element': p.element, text: p.message });
        link.addEventListener('click', function (ev) { ev.preventDefault(); focusElement(p.element); });
        li.appendChild(link);
        counts[p.element] = (counts[p.element] || 0) + 1;
      } else {
        li.textContent = p.message;
      }
      ul.appendChild(li);
    });
    Object.keys(counts).forEach(function (id) {
      var badge = el('span', { 'class': 'ims-error-badge', title: T.conflict, text: String(counts[id]) });
      badge.addEventListener('click', function () { focusElement(id); });
      overlays.add(id, 'ims-error', { position: { top: -11, left: -11 }, html: badge });
      canvas.addMarker(id, 'ims-error-marker');
    });
    renderProps();
  }

  function focusElement(id) {
    var target = registry.get(id);
    if (!target) { return; }
    selection.select(target);
    try { canvas.scrollToElement(target); } catch (e) { /* older canvas */ }
  }

  /* ---------------------------------------------------------------- the side panel */
  function field(label, input, help, id) {
    input.id = id;
    var group = el('div', { 'class': 'form-group' }, [el('label', { 'for': id, text: label }), input]);
    if (help) {
      var h = el('p', { 'class': 'help-block', id: id + '-help', text: help });
      input.setAttribute('aria-describedby', id + '-help');
      group.appendChild(h);
    }
    return group;
  }

  function textInput(value) {
    return el('input', { type: 'text', 'class': 'form-control', value: value || '' });
  }

  function select(options, value) {
    var s = el('select', { 'class': 'form-control' });
    options.forEach(function (o) {
      var opt = el('option', { value: o[0], text: o[1] });
      if (o[0] === value) { opt.selected = true; }
      s.appendChild(opt);
    });
    return s;
  }

  var checkTimers = {};
  /* An expression field: the server says whether it is allowed as the user types. */
  function expressionField(label, value, help, id, apply) {
    var input = textInput(value);
    input.setAttribute('spellcheck', 'false');
    var group = field(label, input, help, id);
    var out = el('div', { 'class': 'expr-status', id: id + '-status', 'aria-live': 'polite' });
    group.appendChild(out);
    function check() {
      var text = input.value;
      out.className = 'expr-status text-muted';
      out.textContent = T.checking;
      post(cfg.urls.expression, { expression: text }).then(function (r) {
        if (input.value !== text) { return; }
        var ok = r.data && r.data.valid;
        input.setAttribute('aria-invalid', ok ? 'false' : 'true');
        out.className = 'expr-status ' + (ok ? 'expr-ok' : 'expr-bad');
        out.textContent = ok ? T.ok : (r.data.error || T.failed);
      }).catch(function () { out.textContent = T.failed; });
    }
    input.addEventListener('input', function () {
      clearTimeout(checkTimers[id]);
      checkTimers[id] = setTimeout(check, 250);
    });
    input.addEventListener('change', function () { apply(input.value.trim()); });
    if (value) { check(); }
    return group;
  }

  function formalExpression(text) {
    return text ? moddle.create('bpmn:FormalExpression', { body: text }) : undefined;
  }

  function renderProps() {
    propsBody.innerHTML = '';
    var e = current;
    if (!e || e.type === 'label') {
      propsBody.appendChild(el('p', { 'class': 'text-muted', text: T.select }));
      return;
    }
    var bo = e.businessObject;
    var mine = problems.filter(function (p) { return p.element === bo.id; });
    if (mine.length) {
      var alert = el('div', { 'class': 'alert alert-danger', role: 'alert', id: 'element-problems' });
      mine.forEach(function (p) { alert.appendChild(el('p', { text: p.message })); });
      propsBody.appendChild(alert);
    }
    propsBody.appendChild(el('p', {}, [el('strong', { text: T.type + ': ' }),
      document.createTextNode(typeName(bo) + ' '), el('code', { text: bo.id })]));

    if (bo.$type === 'bpmn:Lane') {
      var roles = [['', T.choose]].concat(cfg.roles.map(function (r) { return [r, r]; }));
      if (bo.name && cfg.roles.indexOf(bo.name) === -1) { roles.push([bo.name, bo.name]); }
      var roleSelect = select(roles, bo.name || '');
      roleSelect.addEventListener('change', function () {
        modeling.updateProperties(e, { name: roleSelect.value });
      });
      propsBody.appendChild(field(T.role, roleSelect, null, 'prop-role'));
      return;
    }
    if (bo.$type === 'bpmn:Participant' || bo.$type === 'bpmn:Process' || e.type === 'bpmn:Collaboration') {
      var pname = textInput(bo.name);
      pname.addEventListener('change', function () { modeling.updateProperties(e, { name: pname.value }); });
      propsBody.appendChild(field(T.name, pname, null, 'prop-name'));
      return;
    }
    var name = textInput(bo.name);
    name.addEventListener('change', function () { modeling.updateLabel(e, name.value); });
    propsBody.appendChild(field(T.name, name, null, 'prop-name'));

    if (/Task$/.test(bo.$type) && bo.$type !== 'bpmn:ServiceTask') {
      var lane = laneOf(bo);
      propsBody.appendChild(el('p', {}, [el('strong', { text: T.completed_by + ': ' }),
        document.createTextNode(lane ? (lane.name || '?') : T.no_lane)]));
    }
    if (isGatewayFlow(bo)) {
      if (bo.sourceRef.default === bo) {
        propsBody.appendChild(el('p', { 'class': 'text-muted', text: T.default_flow }));
      } else {
        var cond = bo.conditionExpression ? bo.conditionExpression.body : '';
        propsBody.appendChild(expressionField(T.condition, cond, T.condition_help, 'prop-condition',
          function (text) { modeling.updateProperties(e, { conditionExpression: formalExpression(text) }); }));
      }
    }
    var timer = timerOf(bo);
    if (timer) {
      var duration = timer.timeDuration ? timer.timeDuration.body : '';
      propsBody.appendChild(expressionField(T.timer, duration, T.timer_help, 'prop-timer',
        function (text) { modeling.updateModdleProperties(e, timer, { timeDuration: formalExpression(text) }); }));
    }
    if (bo.$type === 'bpmn:ServiceTask') { renderOperator(e, bo); }
  }

  function renderOperator(e, bo) {
    var op = operatorOf(bo);
    var opName = op ? op.get('id') : '';
    var options = [['', T.choose]].concat(cfg.operators.map(function (o) {
      return [o.name, o.name + (o.description ? ' — ' + o.description : '')];
    }));
    if (opName && !cfg.operators.some(function (o) { return o.name === opName; })) {
      options.push([opName, opName]);
    }
    var opSelect = select(options, opName);
    opSelect.addEventListener('change', function () { setOperator(e, opSelect.value); });
    propsBody.appendChild(field(T.operator, opSelect, null, 'prop-operator'));
    if (!op) { return; }
    var result = textInput(op.get('resultVariable'));
    result.addEventListener('change', function () { op.set('resultVariable', result.value.trim()); touched(e); });
    propsBody.appendChild(field(T.result, result, null, 'prop-result'));
    var spec = cfg.operators.filter(function (o) { return o.name === opName; })[0];
    var names = spec ? spec.params : [];
    if (!names.length) { return; }
    propsBody.appendChild(el('p', {}, [el('strong', { text: T.parameters })]));
    names.forEach(function (pname) {
      var param = paramOf(op, pname);
      propsBody.appendChild(expressionField(pname, param ? param.get('value') : '', null,
        'prop-param-' + pname, function (text) { setParam(e, op, pname, text); }));
    });
  }

  function paramOf(op, name) {
    var params = op.get('parameters');
    return params ? (params.get('parameter') || []).filter(function (p) { return p.get('id') === name; })[0] : null;
  }

  function touched(e) {
    dirty = true;
    eventBus.fire('elements.changed', { elements: [e] });
  }

  function setOperator(e, name) {
    var bo = e.businessObject;
    var ext = bo.extensionElements;
    if (!ext) {
      ext = moddle.create('bpmn:ExtensionElements', { values: [] });
      modeling.updateProperties(e, { extensionElements: ext });
    }
    var op = operatorOf(bo);
    if (!name) {
      if (op) { modeling.updateModdleProperties(e, ext, { values: ext.values.filter(function (v) { return v !== op; }) }); }
    } else {
      if (!op) {
        op = moddle.create('spiffworkflow:serviceTaskOperator', { resultVariable: 'result' });
        op.$parent = ext;
        modeling.updateModdleProperties(e, ext, { values: (ext.values || []).concat([op]) });
      }
      op.set('id', name);
      op.set('parameters', undefined);
    }
    touched(e);
    renderProps();
  }

  function setParam(e, op, name, text) {
    var params = op.get('parameters');
    if (!params) {
      params = moddle.create('spiffworkflow:parameters', { parameter: [] });
      params.$parent = op;
      op.set('parameters', params);
    }
    var p = paramOf(op, name);
    if (!p) {
      p = moddle.create('spiffworkflow:parameter', { id: name, type: 'str' });
      p.$parent = params;
      params.get('parameter').push(p);
    }
    p.set('value', text);
    touched(e);
  }

  /* ---------------------------------------------------------------- element picker
   * Every editable element in a list, so the editor works from the keyboard too. */
  var picker = document.getElementById('element-picker');
  var ORDER = ['Lane', 'UserTask', 'ManualTask', 'Task', 'ServiceTask', 'ExclusiveGateway',
    'InclusiveGateway', 'ParallelGateway', 'SequenceFlow', 'BoundaryEvent', 'IntermediateCatchEvent',
    'StartEvent', 'EndEvent', 'Participant'];

  function describe(bo) {
    var kind = typeName(bo);
    var label = (T.kinds && T.kinds[kind]) || kind;
    var name = bo.name;
    if (kind === 'SequenceFlow') {
      var from = bo.sourceRef && (bo.sourceRef.name || bo.sourceRef.id);
      var to = bo.targetRef && (bo.targetRef.name || bo.targetRef.id);
      name = (name ? name + ': ' : '') + from + ' → ' + to;
    }
    return label + ': ' + (name || bo.id) + ' (' + bo.id + ')';
  }

  function fillPicker() {
    var items = registry.filter(function (e) {
      return e.type !== 'label' && e.businessObject && ORDER.indexOf(typeName(e.businessObject)) !== -1;
    }).map(function (e) { return e.businessObject; });
    items.sort(function (a, b) {
      return (ORDER.indexOf(typeName(a)) - ORDER.indexOf(typeName(b))) ||
        describe(a).localeCompare(describe(b));
    });
    var chosen = current && current.businessObject ? current.businessObject.id : '';
    picker.innerHTML = '';
    picker.appendChild(el('option', { value: '', text: T.choose }));
    items.forEach(function (bo) {
      var opt = el('option', { value: bo.id, text: describe(bo) });
      if (bo.id === chosen) { opt.selected = true; }
      picker.appendChild(opt);
    });
  }
  picker.addEventListener('change', function () {
    if (picker.value) { focusElement(picker.value); }
  });
  var pickerTimer = null;
  eventBus.on('elements.changed', function () {
    clearTimeout(pickerTimer);
    pickerTimer = setTimeout(fillPicker, 200);
  });

  /* ---------------------------------------------------------------- check, review, deploy */
  function currentXml() {
    return modeler.saveXML({ format: true }).then(function (r) { return r.xml; });
  }

  function renderChanges(changes) {
    var box = document.getElementById('changes');
    box.innerHTML = '';
    [['added', T.added], ['removed', T.removed], ['changed', T.changed]].forEach(function (kind) {
      var items = changes[kind[0]] || [];
      if (!items.length) { return; }
      box.appendChild(el('h3', { 'class': 'h5', text: kind[1] + ' (' + items.length + ')' }));
      var ul = el('ul', { 'class': 'change-' + kind[0] });
      items.forEach(function (c) {
        var li = el('li', {}, [el('strong', { text: c.type + ' ' }), el('code', { text: c.id }),
          document.createTextNode(c.name ? ' (' + c.name + ')' : '')]);
        if (c.fields) {
          var fl = el('ul', {});
          c.fields.forEach(function (f) {
            var label = cfg.field_labels[f.field] || f.field;
            fl.appendChild(el('li', { text: label + ': “' + (f.old || '') + '” → “' + (f['new'] || '') + '”' }));
          });
          li.appendChild(fl);
        }
        ul.appendChild(li);
      });
      box.appendChild(ul);
    });
  }

  function check(thenReview) {
    say('info', T.checking);
    document.getElementById('review-panel').classList.add('hidden');
    return currentXml().then(function (xml) {
      return post(cfg.urls.check, { xml: xml, base_version: baseVersion }).then(function (r) {
        if (r.status !== 200) { say('danger', (r.data && r.data.message) || T.failed); return; }
        var d = r.data;
        showProblems(d.problems);
        if (!d.valid) { say('danger', T.conflict + ' ' + d.errors.length); return; }
        if (d.unchanged) { say('info', T.unchanged); return; }
        say('success', T.no_problems);
        if (thenReview) {
          renderChanges(d.changes);
          var btn = document.getElementById('btn-deploy');
          btn.textContent = T.deploy_as;
          document.getElementById('review-panel').classList.remove('hidden');
          btn.focus();
        }
      });
    }).catch(function (err) { say('danger', T.failed + ' ' + (err && err.message || '')); });
  }

  function deploy() {
    var btn = document.getElementById('btn-deploy');
    btn.disabled = true;
    currentXml().then(function (xml) {
      return post(cfg.urls.deploy, { xml: xml, base_version: baseVersion }).then(function (r) {
        btn.disabled = false;
        document.getElementById('review-panel').classList.add('hidden');
        if (r.status === 202) {
          /* pending: the active version (our base) stays until a Head of Finance approves */
          dirty = false;
          showProblems([]);
          var link = cfg.urls.list + '#proposal-' + r.data.proposal_id;
          say('success', (r.data.message || T.deployed) + ' ', 'deploy-result')
            .appendChild(el('a', { href: link, 'class': 'alert-link', text: T.see_proposal }));
          var item = el('li', { 'data-proposal': String(r.data.proposal_id) }, [
            el('a', { href: link, text: T.proposal + ' ' + r.data.proposal_id }),
            document.createTextNode(': ' + T.version + ' ' + r.data.version)]);
          document.getElementById('pending-proposals').appendChild(item);
          document.getElementById('pending-panel').classList.remove('hidden');
          return;
        }
        showProblems((r.data && r.data.problems) || []);
        say(r.status === 409 ? 'warning' : 'danger',
            T.conflict + ' ' + ((r.data && r.data.message) || T.failed), 'deploy-result');
      });
    }).catch(function (err) { btn.disabled = false; say('danger', T.failed + ' ' + (err && err.message || '')); });
  }

  /* ---------------------------------------------------------------- wiring */
  eventBus.on('selection.changed', function (ev) {
    current = ev.newSelection && ev.newSelection.length === 1 ? ev.newSelection[0] : null;
    picker.value = current && current.businessObject ? current.businessObject.id : '';
    renderProps();
  });
  eventBus.on('commandStack.changed', function () {
    dirty = true;
    if (current && document.activeElement && propsBody.contains(document.activeElement)) { return; }
    renderProps();
  });
  document.getElementById('btn-check').addEventListener('click', function () { check(false); });
  document.getElementById('btn-save').addEventListener('click', function () { check(true); });
  document.getElementById('btn-deploy').addEventListener('click', deploy);
  document.getElementById('btn-cancel').addEventListener('click', function () {
    document.getElementById('review-panel').classList.add('hidden');
    say('info', '');
  });
  document.getElementById('btn-undo').addEventListener('click', function () { commandStack.undo(); });
  document.getElementById('btn-redo').addEventListener('click', function () { commandStack.redo(); });
  document.getElementById('btn-download').addEventListener('click', function () {
    currentXml().then(function (xml) {
      var a = el('a', { href: URL.createObjectURL(new Blob([xml], { type: 'application/xml' })),
                        download: cfg.process_id + '.bpmn' });
      document.body.appendChild(a); a.click(); a.remove();
    });
  });
  document.getElementById('open-file').addEventListener('change', function (ev) {
    var file = ev.target.files[0];
    if (!file) { return; }
    file.text().then(function (text) {
      return modeler.importXML(text).then(function () {
        fit();
        dirty = true;
        fillPicker();
        showProblems([]);
        say('info', T.opened);
      });
    }).catch(function (err) { say('danger', T.bad_file + ' ' + err.message); });
  });
  window.addEventListener('beforeunload', function (ev) {
    if (dirty) { ev.preventDefault(); ev.returnValue = T.leave; }
  });

  /* The whole diagram in view: fitted, then shrunk about its centre so that it clears the
     palette on the left and the editor's right edge alike (it was clipped on the right). The
     palette's width is measured, not assumed: its size depends on the bpmn-js version and on our
     CSS (larger targets made it wider than the 110px once assumed, and the diagram overlapped it). */
  function paletteEdge(margin) {
    var container = document.querySelector('#bpmn-editor .djs-container');
    var palette = document.querySelector('#bpmn-editor .djs-palette');
    if (!container || !palette) { return 110; }
    var right = palette.getBoundingClientRect().right - container.getBoundingClientRect().left;
    return Math.max(0, Math.ceil(right)) + margin;
  }
  function fit() {
    var MARGIN = 20;  // px: a margin between the diagram and the palette or the editor's edges
    var PALETTE = paletteEdge(MARGIN);  // px from the container's left edge the diagram must clear
    canvas.zoom('fit-viewport', 'auto');
    var vb = canvas.viewbox();
    var inner = vb.inner, outer = vb.outer;
    var scale = Math.min((outer.width - PALETTE - MARGIN) / inner.width,
                         (outer.height - 2 * MARGIN) / inner.height, 1.2);
    var width = outer.width / scale, height = outer.height / scale;
    var left = PALETTE / scale, right = MARGIN / scale;
    canvas.viewbox({
      x: inner.x - left - (width - left - right - inner.width) / 2,
      y: inner.y - (height - inner.height) / 2,
      width: width, height: height });
  }

  modeler.importXML(cfg.xml).then(function () {
    fit();
    dirty = false;
    fillPicker();
    var watermark = document.querySelector('#bpmn-editor .bjs-powered-by');
    if (watermark) { watermark.setAttribute('aria-label', 'Powered by bpmn.io'); }
    document.getElementById('bpmn-editor').setAttribute('data-ready', 'true');
  }).catch(function (err) { say('danger', T.bad_file + ' ' + err.message); });
})();
