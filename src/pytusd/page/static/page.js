// pytusd's upload page: Uppy's Dashboard with its Tus plugin. Every URL is relative to this page,
// so the page works under any --base-path and behind a proxy that mounts pytusd under a prefix.
;(function () {
  'use strict'
  var Uppy = window.Uppy
  var body = document.body
  var endpoint = new URL(body.dataset.endpoint, document.baseURI).href
  var params = new URLSearchParams(window.location.search)
  // ?chunkSize=N: PATCH at most N bytes per request (default: the whole rest in one request).
  var chunkSize = parseInt(params.get('chunkSize') || '', 10)
  // ?retryDelays=0,1000,...: milliseconds before each retry ("" for none). The default outlasts a
  // server restart of several seconds; the upload then resumes at the server's offset.
  var retryDelays = [0, 1000, 3000, 5000, 10000]
  if (params.has('retryDelays')) {
    retryDelays = params.get('retryDelays').split(',').filter(Boolean).map(Number).filter(function (n) {
      return n >= 0
    })
  }
  var tokenField = document.getElementById('token')
  var TOKEN_KEY = 'pytusd-upload-token'

  document.getElementById('endpoint').textContent = endpoint
  try {
    tokenField.value = window.sessionStorage.getItem(TOKEN_KEY) || ''
  } catch (e) { /* storage disabled: the field still works for this page */ }
  tokenField.addEventListener('input', function () {
    try {
      window.sessionStorage.setItem(TOKEN_KEY, tokenField.value)
    } catch (e) { /* as above */ }
  })

  var uppy = new Uppy.Uppy({ autoProceed: false })
    .use(Uppy.Dashboard, {
      inline: true,
      target: '#uppy',
      width: '100%',
      height: 420,
      showProgressDetails: true,
      showLinkToFileUploadResult: true,
      proudlyDisplayPoweredByUppy: false,
      note: 'Several files at once; each can be paused and resumed.',
    })
    .use(Uppy.Tus, {
      endpoint: endpoint,
      chunkSize: chunkSize > 0 ? chunkSize : Infinity,
      retryDelays: retryDelays,
      // The upload URLs stay in localStorage (tus fingerprints), so a reload resumes them.
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onBeforeRequest: function (req) {
        var token = tokenField.value.trim()
        if (token) req.setHeader('Authorization', 'Bearer ' + token)
      },
    })

  uppy.on('upload-success', function (file, response) {
    var item = document.createElement('li')
    var link = document.createElement('a')
    link.href = response.uploadURL
    link.textContent = file.name
    link.rel = 'noreferrer noopener'
    link.target = '_blank'
    item.appendChild(link)
    document.getElementById('finished').appendChild(item)
  })
  window.pytusdUppy = uppy // for the browser tests and the console
})()
