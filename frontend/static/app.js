// Progressive enhancement: without JavaScript the form posts to /infer and the server renders
// the result; with it, the page previews the image (chosen, dropped or pasted), calls the JSON
// API in place, explains any of the top labels, and lists, registers and deletes models.
(function () {
  const form = document.getElementById("classify-form");
  const imageInput = document.getElementById("image-input");
  const dropZone = document.getElementById("drop-zone");
  const preview = document.getElementById("preview");
  const status = document.getElementById("status");
  const result = document.getElementById("result");
  const list = document.getElementById("predictions");
  const summary = document.getElementById("summary");
  const answeredBy = document.getElementById("answered-by");
  const note = document.getElementById("labels-note");
  const error = document.getElementById("error");
  const select = document.getElementById("model-select");
  const modelRows = document.getElementById("model-rows");
  const modelsStatus = document.getElementById("models-status");

  // A token, when the service needs one: kept for this tab only, sent as a header.
  const tokenInput = document.getElementById("api-token");
  const TOKEN_KEY = "mobilenet-service-token";
  function headers() {
    const token = tokenInput ? tokenInput.value : "";
    return token ? { Authorization: "Bearer " + token } : {};
  }
  async function failure(response) {
    const body = await response.json().catch(() => ({}));
    const problem = body.error || {};
    return new Error((problem.message || response.statusText) + " (" + (problem.code || response.status) + ")");
  }

  // --- the models: the picker and the list ------------------------------------------------

  // The words the answers use: what was uploaded (keras, tflite, graphdef, savedmodel).
  function formatOf(model) {
    return (model.source && model.source.format) || model.format;
  }
  // How pixels become the model's input, as a person reads it.
  function preprocessing(model) {
    const n = model.normalization || {};
    if (model.input && model.input.dtype === "uint8") return "0–255 (quantized)";
    if (n.mode === "raw") return "0–255";
    if (n.mode !== "mean_std") return "[-1, 1]";
    const mean = [].concat(n.mean), std = [].concat(n.std);
    const all = (values, v) => values.every((x) => x === v);
    if (all(mean, 127.5) && all(std, 127.5)) return "[-1, 1]";
    if (all(mean, 0) && all(std, 255)) return "[0, 1]";
    if (all(mean, 0) && all(std, 1)) return "[0, 255]";
    return "(x − " + mean.join("/") + ") / " + std.join("/");
  }
  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;  // textContent: names come from users
    return td;
  }
  function addModel(model) {
    if (!select.querySelector('option[value="' + model.id + '"]')) {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.name + " (" + formatOf(model) + ", " + model.output.classes + " classes)";
      select.appendChild(option);
    }
    if (modelRows.querySelector('tr[data-id="' + model.id + '"]')) return;
    const row = document.createElement("tr");
    row.dataset.id = model.id;
    row.append(
      cell(model.name), cell(formatOf(model)),
      cell(model.input.height + "×" + model.input.width), cell(preprocessing(model)),
      cell(String(model.output.classes)),
    );
    const actions = document.createElement("td");
    if (!model.default) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete";
      remove.textContent = "Delete";
      remove.addEventListener("click", () => deleteModel(model, row));
      actions.appendChild(remove);
    }
    row.appendChild(actions);
    modelRows.appendChild(row);
  }
  async function loadModels() {
    const response = await fetch("/api/v1/models", { headers: headers() });
    if (!response.ok) return;
    for (const model of (await response.json()).models) addModel(model);
  }
  async function deleteModel(model, row) {
    if (!window.confirm("Delete " + model.name + "?")) return;
    const response = await fetch("/api/v1/models/" + model.id, { method: "DELETE", headers: headers() });
    if (!response.ok) {
      modelsStatus.textContent = (await failure(response)).message;
      return;
    }
    row.remove();
    const option = select.querySelector('option[value="' + model.id + '"]');
    if (option) option.remove();
    modelsStatus.textContent = "Deleted " + model.name;
  }
  if (tokenInput) {
    tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
    tokenInput.addEventListener("change", function () {
      sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
      loadModels();
    });
  }
  loadModels();

  // --- the image: chosen, dropped or pasted -------------------------------------------------

  const explainToggle = document.getElementById("explain-toggle");
  const explainInput = document.getElementById("explain-input");
  const explanation = document.getElementById("explanation");
  const explainStatus = document.getElementById("explain-status");
  let explained = {};  // overlays of the last classification, by class index
  let explainIndex = null;  // the label explained: the top one unless another was asked

  function forgetExplanation() {
    explained = {};
    explainIndex = null;
    explainInput.checked = false;
    explanation.hidden = true;
    explanation.removeAttribute("src");
    explainToggle.hidden = true;
    explainStatus.textContent = "";
  }

  function showPreview() {
    forgetExplanation();
    const file = imageInput.files[0];
    if (!file) { preview.hidden = true; return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }
  imageInput.addEventListener("change", showPreview);

  function useImage(files) {
    const file = Array.from(files || []).find((f) => f.type.startsWith("image/"));
    if (!file) return false;
    const chosen = new DataTransfer();
    chosen.items.add(file);
    imageInput.files = chosen.files;
    showPreview();
    return true;
  }
  for (const type of ["dragenter", "dragover"]) {
    dropZone.addEventListener(type, function (event) {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
  }
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", function (event) {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    useImage(event.dataTransfer && event.dataTransfer.files);
  });
  document.addEventListener("paste", function (event) {
    if (useImage(event.clipboardData && event.clipboardData.files)) event.preventDefault();
  });

  // The fields of a classification: the image, the model chosen or uploaded, the input size.
  function requestData() {
    const data = new FormData();
    data.append("image", imageInput.files[0]);
    const chosen = select.value;
    if (chosen) data.append("model", chosen);
    for (const field of ["model_file", "label_file"]) {
      const file = form.elements[field].files[0];
      if (file) data.append(field, file);
    }
    if (form.elements["input_size"].value) data.append("input_size", form.elements["input_size"].value);
    return data;
  }

  // --- why this label: any of the top labels --------------------------------------------

  async function explain(index) {
    explainIndex = index;
    for (const item of list.children) item.classList.toggle("explained", item.dataset.index === String(index));
    explainToggle.hidden = false;
    explainInput.checked = true;
    if (!explained[index]) {
      explainStatus.textContent = "Classifying the photo with each region hidden…";
      const data = requestData();
      data.append("label", String(index));
      try {
        const response = await fetch("/api/v1/explain", { method: "POST", body: data, headers: headers() });
        if (!response.ok) throw await failure(response);
        const body = await response.json();
        explained[index] = {
          src: body.overlay_png,
          text: "Red: the regions without which " + body.label.label +
            " loses the most probability (" + body.classifications + " classifications, " +
            body.timings_ms.total + " ms)",
        };
      } catch (problem) {
        explainStatus.textContent = problem.message;
        explainInput.checked = false;
        return;
      }
    }
    if (explainIndex !== index) return;  // another label was asked meanwhile
    explanation.src = explained[index].src;
    explainStatus.textContent = explained[index].text;
    explanation.hidden = !explainInput.checked;
  }

  explainInput.addEventListener("change", function () {
    if (!explainInput.checked) { explanation.hidden = true; return; }
    explain(explainIndex === null ? Number(list.children[0].dataset.index) : explainIndex);
  });

  // --- classifying -------------------------------------------------------------------------

  function showPredictions(body) {
    list.replaceChildren();
    // Rows that would read "0.0%" say nothing: the first label is always shown.
    const shown = body.predictions.filter((p, rank) => rank === 0 || p.probability >= 0.0005);
    for (const p of shown) {
      const item = document.createElement("li");
      item.dataset.index = String(p.index);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = p.label;  // textContent: labels come from users' files
      const bar = document.createElement("progress");
      bar.className = "bar";
      bar.max = 100;
      bar.value = p.probability * 100;
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.textContent = (p.probability * 100).toFixed(1) + "%";
      const why = document.createElement("button");
      why.type = "button";
      why.className = "why";
      why.textContent = "Why?";
      why.title = "Show the regions of the photo that " + p.label + " came from";
      why.addEventListener("click", () => explain(p.index));
      item.append(label, bar, prob, why);
      list.appendChild(item);
    }
    const model = body.model;
    answeredBy.textContent = "Answered by " + model.name + " (" + model.source_format +
      (model.id ? ", id " + model.id.slice(0, 12) : "") + ")";
    summary.textContent = "Confidence: " + body.confidence + ", " + body.timings_ms.total + " ms";
    note.textContent = body.labels.note || "";
    result.hidden = false;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const data = requestData();
    forgetExplanation();
    error.hidden = true;
    result.hidden = true;
    status.textContent = "Classifying…";
    try {
      const response = await fetch("/api/v1/classify", { method: "POST", body: data, headers: headers() });
      if (!response.ok) throw await failure(response);
      showPredictions(await response.json());
      explainToggle.hidden = false;
      status.textContent = "";
    } catch (problem) {
      status.textContent = "";
      error.textContent = problem.message;
      error.hidden = false;
    }
  });

  // --- registering, with its progress: the upload, then the model's checks ----------------

  const registerForm = document.getElementById("register-form");
  const registerStatus = document.getElementById("register-status");
  const registerProgress = document.getElementById("register-progress");
  registerForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const request = new XMLHttpRequest();
    let checking = null;
    const started = Date.now();
    request.open("POST", "/api/v1/models");
    for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
    request.responseType = "json";
    registerProgress.hidden = false;
    registerProgress.value = 0;
    registerStatus.textContent = "Uploading the model…";
    request.upload.addEventListener("progress", function (progress) {
      if (progress.lengthComputable) registerProgress.value = progress.loaded / progress.total;
    });
    request.upload.addEventListener("load", function () {
      registerProgress.removeAttribute("value");  // indeterminate: the server is at work
      const tick = () => {
        registerStatus.textContent = "Checking the model: loading it in a sandboxed worker, " +
          "finding its input and range… " + Math.round((Date.now() - started) / 1000) + " s";
      };
      tick();
      checking = setInterval(tick, 1000);
    });
    request.addEventListener("loadend", function () {
      clearInterval(checking);
      registerProgress.hidden = true;
      const body = request.response || {};
      if (request.status < 200 || request.status >= 300) {
        const problem = body.error || {};
        registerStatus.textContent = (problem.message || "the upload failed") + " (" +
          (problem.code || request.status) + ")";
        return;
      }
      addModel(body);
      select.value = body.id;
      registerStatus.textContent = (request.status === 201 ? "Registered " : "Already registered: ") +
        body.name + " (" + body.id.slice(0, 12) + ")" +
        (body.renamed_from ? ", renamed from " + body.renamed_from : "");
    });
    request.send(new FormData(registerForm));
  });
})();
