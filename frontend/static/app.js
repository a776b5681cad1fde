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

  const explainToggle = document.getElementById("explain-toggle");
  const explainInput = document.getElementById("explain-input");
  const explanation = document.getElementById("explanation");
  const explainStatus = document.getElementById("explain-status");
  let explained = false;  // the overlay of the last classification is loaded

  function forgetExplanation() {
    explained = false;
    explainInput.checked = false;
    explanation.hidden = true;
    explanation.removeAttribute("src");
    explainToggle.hidden = true;
    explainStatus.textContent = "";
  }

  imageInput.addEventListener("change", function () {
    forgetExplanation();
    const file = imageInput.files[0];
    if (!file) { preview.hidden = true; return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
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

  explainInput.addEventListener("change", async function () {
    if (!explainInput.checked) { explanation.hidden = true; return; }
    if (!explained) {
      explainStatus.textContent = "Classifying the photo with each region hidden…";
      try {
        const response = await fetch("/api/v1/explain", { method: "POST", body: requestData(), headers: headers() });
        const body = await response.json();
        if (!response.ok) throw new Error(body.error.message + " (" + body.error.code + ")");
        explanation.src = body.overlay_png;
        explained = true;
        explainStatus.textContent = "Red: the regions without which " + body.label.label +
          " loses the most probability (" + body.classifications + " classifications, " +
          body.timings_ms.total + " ms)";
      } catch (failure) {
        explainStatus.textContent = failure.message;
        explainInput.checked = false;
        return;
      }
    }
    explanation.hidden = !explainInput.checked;
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
    const data = requestData();
    forgetExplanation();
    error.hidden = true;
    result.hidden = true;
    status.textContent = "Classifying…";
    try {
      const response = await fetch("/api/v1/classify", { method: "POST", body: data, headers: headers() });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error.message + " (" + body.error.code + ")");
      showPredictions(body);
      explainToggle.hidden = false;
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
