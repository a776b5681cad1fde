// Progressive enhancement: without JavaScript the form posts to /infer and the server renders
// the result; with it, the page previews the image and calls the JSON API in place.
(function () {
  const form = document.getElementById("classify-form");
  const imageInput = document.getElementById("image-input");
  const preview = document.getElementById("preview");
  const status = document.getElementById("status");
  const result = document.getElementById("result");
  const list = document.getElementById("predictions");
  const summary = document.getElementById("summary");
  const answeredBy = document.getElementById("answered-by");
  const note = document.getElementById("labels-note");
  const error = document.getElementById("error");
  const select = document.getElementById("model-select");

  // A token, when the service needs one: kept for this tab only, sent as a header.
  const tokenInput = document.getElementById("api-token");
  const TOKEN_KEY = "mobilenet-service-token";
  function headers() {
    const token = tokenInput ? tokenInput.value : "";
    return token ? { Authorization: "Bearer " + token } : {};
  }
  function addModel(model) {
    if (select.querySelector('option[value="' + model.id + '"]')) return;
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = model.name + " (" + model.format + ", " + model.output.classes + " classes)";
    select.appendChild(option);
  }
  async function loadModels() {
    const response = await fetch("/api/v1/models", { headers: headers() });
    if (!response.ok) return;
    for (const model of (await response.json()).models) addModel(model);
  }
  if (tokenInput) {
    tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
    tokenInput.addEventListener("change", function () {
      sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
      loadModels();
    });
    if (tokenInput.value) loadModels();
  }

  imageInput.addEventListener("change", function () {
    const file = imageInput.files[0];
    if (!file) { preview.hidden = true; return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  });

  function showPredictions(body) {
    list.replaceChildren();
    for (const p of body.predictions) {
      const item = document.createElement("li");
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
      item.append(label, bar, prob);
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
    const data = new FormData();
    data.append("image", imageInput.files[0]);
    const chosen = select.value;
    if (chosen) data.append("model", chosen);
    for (const field of ["model_file", "label_file"]) {
      const file = form.elements[field].files[0];
      if (file) data.append(field, file);
    }
    if (form.elements["input_size"].value) data.append("input_size", form.elements["input_size"].value);
    error.hidden = true;
    result.hidden = true;
    status.textContent = "Classifying…";
    try {
      const response = await fetch("/api/v1/classify", { method: "POST", body: data, headers: headers() });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error.message + " (" + body.error.code + ")");
      showPredictions(body);
      status.textContent = "";
    } catch (failure) {
      status.textContent = "";
      error.textContent = failure.message;
      error.hidden = false;
    }
  });

  const registerForm = document.getElementById("register-form");
  const registerStatus = document.getElementById("register-status");
  registerForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    registerStatus.textContent = "Checking the model…";
    const response = await fetch("/api/v1/models", {
      method: "POST", body: new FormData(registerForm), headers: headers(),
    });
    const body = await response.json();
    if (!response.ok) {
      registerStatus.textContent = body.error.message + " (" + body.error.code + ")";
      return;
    }
    addModel(body);
    select.value = body.id;
    registerStatus.textContent = "Registered " + body.name + " (" + body.id.slice(0, 12) + ")";
  });
})();
