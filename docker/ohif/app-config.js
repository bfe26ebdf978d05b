/**
 * OHIF 3.x (tested: npm @ohif/app 3.13.2) configuration for dermnode: OHIF over a same-origin DICOMweb
 * server (Orthanc's DICOMweb plugin behind /dicom-web), plus a small extension that closes OHIF's gap for
 * dermoscopy: stock OHIF does not list Dermoscopic Photography Image Storage (1.2.840.10008.5.1.4.1.1.77.1.7)
 * in its image SOP class handler, so it shows such a series as "Unsupported displaySet".
 *
 * Use: serve OHIF's dist/ folder with this file as its app-config.js, and /dicom-web proxied to the PACS's
 * DICOMweb root (docker/ohif/nginx.conf does both; docker/compose.yaml mounts them into the ohif/app image).
 */

/** Image SOP classes a dermoscopy site sends; OHIF's stack handler lacks the first one. */
const DERMOSCOPY_IMAGE_SOP_CLASS_UIDS = [
  '1.2.840.10008.5.1.4.1.1.77.1.7', // Dermoscopic Photography Image Storage (DICOM Sup 221)
  '1.2.840.10008.5.1.4.1.1.77.1.4', // VL Photographic Image Storage (legacy dermatoscopes)
];

/**
 * An extension with no modules of its own: when it registers (after OHIF's default extension), it adds the
 * dermoscopy SOP classes to the default extension's "stack" SOP class handler, the one that makes image
 * display sets. The handler's list is the array OHIF consults for every instance, so nothing else changes.
 */
const dermoscopySopClassesExtension = {
  id: 'dermnode-dermoscopy-sop-classes',
  preRegistration({ extensionManager }) {
    const stack = extensionManager.getModuleEntry('@ohif/extension-default.sopClassHandlerModule.stack');
    if (!stack || !Array.isArray(stack.sopClassUids)) {
      console.error('dermnode: OHIF has no default stack SOP class handler; dermoscopy images will not display');
      return;
    }
    for (const uid of DERMOSCOPY_IMAGE_SOP_CLASS_UIDS) {
      if (!stack.sopClassUids.includes(uid)) {
        stack.sopClassUids.push(uid);
      }
    }
  },
};

const dicomWebRoot = `${window.location.origin}/dicom-web`;

window.config = {
  name: 'dermnode',
  routerBasename: '/',
  extensions: [dermoscopySopClassesExtension],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  // AI output for research: OHIF's own "investigational use" notice would cover the image on first load.
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 25 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'PACS (DICOMweb)',
        name: 'orthanc',
        wadoUriRoot: dicomWebRoot,
        qidoRoot: dicomWebRoot,
        wadoRoot: dicomWebRoot,
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
