// The 3D view: a mesh (clay-coloured, or its own vertex colours) and the input points over it,
// orbit/zoom/pan with OrbitControls, a wireframe switch. Renders on demand, not every frame.

import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { PLYLoader } from 'three/addons/loaders/PLYLoader.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OBJLoader } from 'three/addons/loaders/OBJLoader.js';
import { STLLoader } from 'three/addons/loaders/STLLoader.js';

export const BACKGROUND = 0x2a2e35;
const CLAY = 0xd8cfc0;
const POINTS = 0x38bdf8;

/** A BufferGeometry from the bytes of a mesh file (`format`: ply, glb, obj or stl). */
export async function meshGeometry(buffer, format) {
  let geometry;
  if (format === 'ply') geometry = new PLYLoader().parse(buffer);
  else if (format === 'stl') geometry = new STLLoader().parse(buffer);
  else {
    const root = format === 'glb'
      ? (await new GLTFLoader().parseAsync(buffer, '')).scene
      : new OBJLoader().parse(new TextDecoder().decode(buffer));
    root.updateMatrixWorld(true);
    root.traverse((o) => {
      if (!geometry && o.isMesh) geometry = o.geometry.clone().applyMatrix4(o.matrixWorld);
    });
    if (!geometry) throw new Error('the file has no mesh');
  }
  if (!geometry.getAttribute('normal')) geometry.computeVertexNormals();
  return geometry;
}

function meshMaterial(geometry) {
  const colored = Boolean(geometry.getAttribute('color'));
  return new THREE.MeshStandardMaterial({
    color: colored ? 0xffffff : CLAY, vertexColors: colored, roughness: 0.75, metalness: 0.0,
    side: THREE.DoubleSide, polygonOffset: true, polygonOffsetFactor: 1, polygonOffsetUnits: 1,
  });
}

export class Viewer {
  /** `container` receives the canvas; `options.preserveDrawingBuffer` for thumbnails. */
  constructor(container, { width, height, preserveDrawingBuffer = false, controls = true } = {}) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND);
    this.camera = new THREE.PerspectiveCamera(40, 1, 0.01, 1000);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x3a3a48, 1.0));
    const head = new THREE.DirectionalLight(0xffffff, 2.2);
    head.position.set(0.5, 1, 1);
    this.camera.add(head);
    this.scene.add(this.camera);
    this.mesh = null;
    this.points = null;
    this.wireframe = false;
    container?.appendChild(this.renderer.domElement);
    if (controls) {
      this.controls = new OrbitControls(this.camera, this.renderer.domElement);
      this.controls.addEventListener('change', () => this.render());
      this.controls.listenToKeyEvents(container);
    }
    if (width) this.setSize(width, height);
    else if (container) {
      new ResizeObserver(() => this.setSize(container.clientWidth, container.clientHeight)).observe(container);
    }
  }

  setSize(width, height) {
    if (!width || !height) return;
    this.renderer.setSize(width, height, false);
    this.renderer.domElement.style.width = `${width}px`;
    this.renderer.domElement.style.height = `${height}px`;
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  /** Show these input points (Float32Array of x y z), replacing earlier ones. */
  setPoints(positions) {
    this._drop('points');
    if (!positions || !positions.length) return this.render();
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute('position', new THREE.BufferAttribute(positions, 3));
    const material = new THREE.PointsMaterial({ color: POINTS, size: 2, sizeAttenuation: false });
    this.points = new THREE.Points(geometry, material);
    this.scene.add(this.points);
    if (!this.mesh) this.frame();
    this.render();
  }

  setMesh(geometry) {
    this._drop('mesh');
    if (geometry) {
      const material = meshMaterial(geometry);
      material.wireframe = this.wireframe;
      this.mesh = new THREE.Mesh(geometry, material);
      this.scene.add(this.mesh);
      this.frame();
    }
    this.render();
  }

  clear() {
    this._drop('mesh');
    this._drop('points');
    this.render();
  }

  setWireframe(on) {
    this.wireframe = on;
    if (this.mesh) this.mesh.material.wireframe = on;
    this.render();
  }

  setVisible(which, on) {
    if (this[which]) this[which].visible = on;
    this.render();
  }

  /** Point the camera at what is shown, from a three-quarter view. */
  frame() {
    const box = new THREE.Box3();
    for (const o of [this.mesh, this.points]) if (o) box.expandByObject(o);
    if (box.isEmpty()) return;
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const r = Math.max(sphere.radius, 1e-6);
    const dist = r / Math.sin(THREE.MathUtils.degToRad(this.camera.fov / 2)) * 0.9;
    const dir = new THREE.Vector3(0.6, 0.45, 1).normalize();
    this.camera.position.copy(sphere.center).addScaledVector(dir, dist);
    this.camera.near = dist / 100;
    this.camera.far = dist * 100;
    this.camera.updateProjectionMatrix();
    this.camera.lookAt(sphere.center);
    if (this.controls) {
      this.controls.target.copy(sphere.center);
      this.controls.update();
    }
    this.render();
  }

  _drop(which) {
    const obj = this[which];
    if (!obj) return;
    this.scene.remove(obj);
    obj.geometry.dispose();
    obj.material.dispose();
    this[which] = null;
  }
}
